"""Copies a GGUF with another `tokenizer.chat_template` (for hostile-template tests).

    python tests/llm/set_chat_template.py IN.gguf OUT.gguf TEMPLATE_FILE

Every other key and every tensor is copied as it is (types kept).
"""

import sys
from pathlib import Path

import gguf


def main(argv: list[str]) -> int:
    src, dst, template_file = (Path(a) for a in argv)
    template = template_file.read_text()
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "tokenizer.chat_template"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    w.add_chat_template(template)
    for t in reader.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
