// Local HTTP servers standing in for the engine manifest server and the Hugging Face Hub,
// and a tiny ustar writer.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { gzipSync } from 'node:zlib'

export interface TestServer {
  url: string
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>
  close(): Promise<void>
}

export async function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<TestServer> {
  const requests: TestServer['requests'] = []
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers })
    handler(req, res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

/** Send `body`, honouring `Range: bytes=N-`; with `cutAfter`, send that many bytes and drop the connection. */
export function sendBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
  opts: { cutAfter?: number; headers?: Record<string, string> } = {},
): void {
  let start = 0
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  if (range) start = Number(range[1])
  if (start > body.length) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` })
    res.end()
    return
  }
  const part = body.subarray(start)
  const headers: Record<string, string> = { 'content-length': String(part.length), ...opts.headers }
  if (range) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`
  res.writeHead(range ? 206 : 200, headers)
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  if (opts.cutAfter !== undefined && opts.cutAfter < part.length) {
    res.write(part.subarray(0, opts.cutAfter), () => setTimeout(() => res.socket?.destroy(), 20))
    return
  }
  res.end(part)
}

// ---------------------------------------------------------------------------------------
// ustar writer

export interface TarMember {
  name: string
  body?: Buffer
  mode?: number
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'fifo'
  linkname?: string
}

const TYPE_FLAG: Record<NonNullable<TarMember['type']>, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  chardev: '3',
  dir: '5',
  fifo: '6',
}

function header(m: TarMember, size: number): Buffer {
  const h = Buffer.alloc(512)
  h.write(m.name, 0, 100, 'utf8')
  h.write(`${(m.mode ?? (m.type === 'dir' ? 0o755 : 0o644)).toString(8).padStart(7, '0')}\0`, 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124)
  h.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
  )
  h.write('        ', 148)
  h.write(TYPE_FLAG[m.type ?? 'file'], 156)
  if (m.linkname) h.write(m.linkname, 157, 100)
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  return h
}

export function tarGz(members: TarMember[]): Buffer {
  const parts: Buffer[] = []
  for (const m of members) {
    const body = m.type === 'file' || m.type === undefined ? (m.body ?? Buffer.alloc(0)) : Buffer.alloc(0)
    parts.push(header(m, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return gzipSync(Buffer.concat(parts))
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
export const gitSha1 = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex')

// ---------------------------------------------------------------------------------------
// A fake Hub

export interface HubFile {
  body: Buffer
  lfs?: boolean
}

export interface HubRepo {
  id: string
  sha: string
  files: Record<string, HubFile>
  /** Rewrite the model info the Hub sends (to serve bad values). */
  patchInfo?: (info: { id: string; sha: string; siblings: Array<Record<string, unknown>> }) => void
}

export interface FakeHub extends TestServer {
  /** Cut the next N downloads of a file after `bytes` bytes. */
  cut: Map<string, { bytes: number; times: number }>
  /** Serve different bytes for a file than the listing promises. */
  corrupt: Set<string>
  /** Require this bearer token for every request. */
  token?: string
  /** Delay between 16 KiB chunks of downloads (ms). */
  chunkDelayMs: number
}

export async function fakeHub(repos: HubRepo[]): Promise<FakeHub> {
  const init: Pick<FakeHub, 'cut' | 'corrupt' | 'chunkDelayMs' | 'token'> = {
    cut: new Map(),
    corrupt: new Set(),
    chunkDelayMs: 0,
  }
  // The handler reads the settings from the returned object, so tests can change them.
  let hub: Pick<FakeHub, 'cut' | 'corrupt' | 'chunkDelayMs' | 'token'> = init
  const find = (org: string, name: string) => repos.find((r) => r.id.toLowerCase() === `${org}/${name}`.toLowerCase())
  const server = await serve((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (hub.token && req.headers.authorization !== `Bearer ${hub.token}`) {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end('{"error":"Invalid username or password."}')
      return
    }
    let m = /^\/api\/models\/([^/]+)\/([^/]+)\/revision\/([^/]+)$/.exec(u.pathname)
    if (m) {
      const repo = find(m[1]!, m[2]!)
      if (!repo) {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end('{"error":"Repository not found"}')
        return
      }
      const siblings = Object.entries(repo.files).map(([rfilename, f]) =>
        f.lfs
          ? {
              rfilename,
              size: f.body.length,
              blobId: gitSha1(Buffer.from(`lfs pointer ${rfilename}`)),
              lfs: { sha256: sha256(f.body), size: f.body.length, pointerSize: 130 },
            }
          : { rfilename, size: f.body.length, blobId: gitSha1(f.body) },
      )
      const info = { id: repo.id, sha: repo.sha, siblings: siblings as Array<Record<string, unknown>> }
      repo.patchInfo?.(info)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(info))
      return
    }
    m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname)
    const repo = m ? find(m[1]!, m[2]!) : undefined
    const file = m ? decodeURIComponent(m[4]!) : ''
    const f = repo?.files[file]
    if (!repo || !f) {
      res.writeHead(404)
      res.end('not found')
      return
    }
    let body = f.body
    if (hub.corrupt.has(file)) {
      body = Buffer.from(body)
      body[body.length - 1] = body[body.length - 1]! ^ 0xff
    }
    const cut = hub.cut.get(file)
    let cutAfter: number | undefined
    if (cut && cut.times > 0 && req.method !== 'HEAD') {
      cut.times--
      cutAfter = cut.bytes
    }
    const headers = { etag: `"${f.lfs ? sha256(f.body) : gitSha1(f.body)}"`, 'x-repo-commit': repo.sha }
    if (hub.chunkDelayMs && req.method !== 'HEAD') {
      // Trickle the body.
      let start = 0
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
      if (range) start = Number(range[1])
      const part = body.subarray(start)
      res.writeHead(range ? 206 : 200, {
        ...headers,
        'content-length': String(part.length),
        ...(range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
      })
      let i = 0
      const tick = () => {
        if (res.destroyed) return
        if (i >= part.length) return void res.end()
        res.write(part.subarray(i, i + 16384))
        i += 16384
        setTimeout(tick, hub.chunkDelayMs)
      }
      tick()
      return
    }
    sendBody(req, res, body, { cutAfter, headers })
  })
  const out: FakeHub = Object.assign(server, init)
  hub = out
  return out
}

/** A small model repository: config, tokenizer, two safetensors shards and files orchard must skip. */
export function tinyRepo(id = 'Orchard-Test/Tiny-Llama', shardBytes = 300_000): HubRepo {
  const rand = (n: number, seed: number) => {
    const b = Buffer.alloc(n)
    let x = seed
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff
      b[i] = x >> 16
    }
    return b
  }
  const shard1 = rand(shardBytes, 1)
  const shard2 = rand(shardBytes / 2, 2)
  return {
    id,
    sha: createHash('sha1').update(id).digest('hex'),
    files: {
      'config.json': {
        body: Buffer.from(JSON.stringify({ model_type: 'llama', architectures: ['LlamaForCausalLM'] })),
      },
      'generation_config.json': { body: Buffer.from('{"temperature":0.6}') },
      'tokenizer.json': { body: Buffer.from('{"model":{"vocab":{}}}') },
      'tokenizer_config.json': { body: Buffer.from('{}') },
      'model.safetensors.index.json': {
        body: Buffer.from(
          JSON.stringify({
            weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
          }),
        ),
      },
      'model-00001-of-00002.safetensors': { body: shard1, lfs: true },
      'model-00002-of-00002.safetensors': { body: shard2, lfs: true },
      'pytorch_model.bin': { body: rand(1000, 3), lfs: true },
      'model.gguf': { body: rand(1000, 4), lfs: true },
      'onnx/model.onnx': { body: rand(1000, 5), lfs: true },
      'README.md': { body: Buffer.from('# tiny') },
    },
  }
}

/**
 * Run `script` in a separate Node process with the built package's entry as `process.argv[1]`
 * and `args` after it; resolves to its stdout once it exits 0 (rejects with its stderr otherwise).
 */
export function runNodeProcess(script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const entry = path.join(__dirname, '..', 'dist', 'index.js')
  const child = spawn(process.execPath, ['-e', script, entry, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${err}`))))
  })
}
