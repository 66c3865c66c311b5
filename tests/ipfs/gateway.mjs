// A trustless IPFS gateway on 127.0.0.1 backed by an in-memory, offline Helia node.
//
// Usage: node gateway.mjs FILE...
// Adds each FILE with kubo-default settings (CIDv0, dag-pb leaves, 256 KiB chunks, balanced
// DAG with 174 links), prints one JSON line {"port": N, "cids": {FILE: CID}} and serves
//   GET /ipfs/<cid>?format=car  (application/vnd.ipld.car, DFS order)
//   GET /ipfs/<cid>?format=raw  (application/vnd.ipld.raw, one block)
// through @helia/verified-fetch until stdin closes or SIGTERM/SIGINT arrives.
// No network: createHeliaLight has no libp2p, routers or block brokers, and every fetch is offline.

import './node20.mjs'
import { createReadStream } from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'
import { createHeliaLight } from 'helia'
import { unixfs } from '@helia/unixfs'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'

const KUBO_DEFAULT = {
  cidVersion: 0,
  rawLeaves: false,
  leafType: 'file',
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 })
}

const files = process.argv.slice(2)
const helia = createHeliaLight()
await helia.start()
const fs = unixfs(helia)
const cids = {}
for (const file of files) {
  const cid = await fs.addByteStream(createReadStream(file), KUBO_DEFAULT)
  cids[file] = cid.toString()
}

const verifiedFetch = await createVerifiedFetch(helia)

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1')
    const match = /^\/ipfs\/([^/]+)$/.exec(url.pathname)
    const format = url.searchParams.get('format')
    if (req.method !== 'GET' || match == null || (format !== 'car' && format !== 'raw')) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('only /ipfs/<cid>?format=car|raw\n')
      return
    }
    let cid
    try {
      cid = CID.parse(match[1])
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad cid\n')
      return
    }
    if (!(await helia.blockstore.has(cid))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    const accept = format === 'car'
      ? 'application/vnd.ipld.car; version=1; order=dfs'
      : 'application/vnd.ipld.raw'
    const upstream = await verifiedFetch(`ipfs://${cid}`, {
      headers: { accept },
      offline: true,
      session: false,
      signal: AbortSignal.timeout(60_000)
    })
    const headers = {}
    upstream.headers.forEach((value, key) => { headers[key] = value })
    res.writeHead(upstream.status, headers)
    if (upstream.body == null) {
      res.end()
    } else {
      Readable.fromWeb(upstream.body).on('error', () => res.destroy()).pipe(res)
    }
  } catch (err) {
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain' })
    }
    res.end(String(err?.message ?? err))
  }
})

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, cids }) + '\n')
})

let stopping = false
async function stop () {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections()
  await verifiedFetch.stop().catch(() => {})
  await helia.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
