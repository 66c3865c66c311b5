#!/usr/bin/env python3
"""Renders a Gramine manifest template the way `gramine-manifest` does, for tests.

gramine-manifest renders with Jinja2 (strict about undefined variables), exposing a
`gramine` object (libos path, runtimedir()), `python`, `env` and the -D variables. This
stand-in provides the same names with fixed paths so the rendered manifest can be checked
without Gramine installed.

Usage: render_gramine.py TEMPLATE [-Dname=value ...]  -> rendered manifest on stdout
"""
import os
import sys

import jinja2


class Gramine:
    libos = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"

    @staticmethod
    def runtimedir(libc="glibc"):
        return f"/usr/lib/x86_64-linux-gnu/gramine/runtime/{libc}"


def main(argv):
    template, defines = argv[0], argv[1:]
    variables = {}
    for d in defines:
        if not d.startswith("-D") or "=" not in d:
            sys.exit(f"bad define {d!r}: use -Dname=value")
        name, value = d[2:].split("=", 1)
        variables[name] = value
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(template))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals.update({"gramine": Gramine, "env": dict(os.environ), "python": {}})
    out = env.get_template(os.path.basename(template)).render(**variables)
    sys.stdout.write(out)


if __name__ == "__main__":
    main(sys.argv[1:])
