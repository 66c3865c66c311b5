// Removes the informational "funding" entries (donation links) from package-lock.json so the
// committed lock carries no URLs at all; .npmrc already omits the "resolved" registry URLs.
// Run after `npm install` changes the lock: node strip-lock-urls.mjs
import { readFileSync, writeFileSync } from 'node:fs'

const path = new URL('./package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(path, 'utf8'))
for (const pkg of Object.values(lock.packages ?? {})) {
  delete pkg.funding
}
writeFileSync(path, JSON.stringify(lock, null, 2) + '\n')
