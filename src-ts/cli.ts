#!/usr/bin/env node
/**
 * `orchard` — the command line of orchard-ts.
 *
 *   orchard engine start|stop|status|logs|install
 *   orchard models pull|list|rm
 *   orchard serve | orchard chat
 *
 * Exit codes: 0 success; 1 failure (one line on stderr: `orchard: <message>`); 2 usage error;
 * 3 `engine status` found no engine running.
 */

import { createReadStream, existsSync, readFileSync, statSync, watch } from 'node:fs'
import path from 'node:path'
import { type ParseArgsConfig, parseArgs } from 'node:util'

import type { DownloadProgress } from './install/http'
import type { Role } from './types'

const USAGE = `usage: orchard <command> [options]

commands:
  engine start     attach to the engine or launch it, and hold it until interrupted
  engine stop      stop the engine (SIGINT, then SIGTERM, then SIGKILL)
  engine status    is an engine running? (exit 3 when not)
  engine logs      print engine.log
  engine install   download and install the engine binary into ~/.orchard
  models pull ID   download a model from the Hugging Face Hub into its cache
  models list      list the models in the Hugging Face cache
  models rm ID     delete a model from the Hugging Face cache
  serve            an OpenAI-compatible HTTP server (chat, responses, completions, models)
  chat [PROMPT]    stream an answer to PROMPT, or chat interactively on a terminal

options:
  -v, --version    print the orchard-ts version
  -h, --help       this help

Run \`orchard <group> --help\` for a group's commands and
\`orchard <group> <command> --help\` for a command's options.
`

/** `orchard <group> --help`: the group's lines of USAGE. */
function groupHelp(group: string): string {
  const lines = USAGE.split('\n').filter((l) => l.startsWith(`  ${group} `))
  return `usage: orchard ${group} <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun \`orchard ${group} <command> --help\` for its options.\n`
}

const HELP: Record<string, string> = {
  'engine start': `usage: orchard engine start [--binary PATH] [--install] [--startup-timeout MS]

Attach to the running engine of this cache root (ORCHARD_CACHE_ROOT) or launch one, print
its pid, and hold a lease until SIGINT/SIGTERM. The engine exits by itself after its last
client leaves, so it stays up while this command (or any other client) runs.

  --binary PATH         engine binary (default: ORCHARD_ENGINE_BINARY, PIE_LOCAL_BUILD, ~/.orchard)
  --install             install the engine first when no binary is found
  --startup-timeout MS  how long a launched engine may take to become ready
`,
  'engine stop': `usage: orchard engine stop [--timeout SECONDS]

Stop the engine of this cache root: SIGINT, then SIGTERM, then SIGKILL, each after the
timeout (default 5 s per signal). Exit 0 also when no engine was running.
`,
  'engine status': `usage: orchard engine status [--json]

Exit 0 and print the pid when an engine is running for this cache root; exit 3 when not.
`,
  'engine logs': `usage: orchard engine logs [-n LINES] [-f]

Print the engine log (<cache root>/engine.log).

  -n, --lines N   only the last N lines
  -f, --follow    keep printing new lines until interrupted
`,
  'engine install': `usage: orchard engine install [--channel NAME] [--version V] [--reinstall]

Download the engine for this platform from the manifest server (ORCHARD_MANIFEST_URL),
verify its sha256 and install it into ORCHARD_HOME (default ~/.orchard). Prints the binary path.
`,
  'models pull': `usage: orchard models pull ID [--revision REV]

Download the files model ID (org/name) needs into the Hugging Face cache (HF_HUB_CACHE,
HF_HOME/hub or ~/.cache/huggingface/hub), resuming partial files. Uses HF_TOKEN and
HF_ENDPOINT. Prints the snapshot directory.
`,
  'models list': `usage: orchard models list [--json]

List the models in the Hugging Face cache with their size and revisions.
`,
  serve: `usage: orchard serve [--host HOST] [--port PORT] [--model ID ...] [--api-key KEY]

Attach to the engine or launch it, load every --model, then serve the OpenAI API at
http://HOST:PORT/v1 until SIGINT/SIGTERM (in-flight requests get --grace seconds to finish,
then are cancelled). See docs/server.md.

  --host HOST      interface to listen on (default 127.0.0.1; 0.0.0.0 exposes the server,
                   which warns unless --api-key is set)
  --port PORT      port (default 8000; 0 picks a free one)
  --model ID       a model to load and serve (repeatable; default: whatever the engine has loaded)
  --api-key KEY    require Authorization: Bearer KEY (default ORCHARD_API_KEY, else none)
  --grace SECONDS  how long in-flight requests may finish on shutdown (default 10)
  --binary PATH    engine binary, as for \`orchard engine start\`
`,
  chat: `usage: orchard chat [--model ID] [--system TEXT] [--max-tokens N] [--seed N] [PROMPT]

With PROMPT (or text piped on stdin), stream the answer to stdout and exit; reasoning goes
to stderr. Without one, on a terminal: an interactive chat with streamed answers (reasoning
dimmed). /reset starts over, /exit (or Ctrl-D) leaves; Ctrl-C stops the current answer.

  --model ID        the model (loaded first if needed; default: the engine's only loaded model)
  --system TEXT     a system message
  --max-tokens N    most tokens per answer
  --seed N          sampling seed, for repeatable answers
  --binary PATH     engine binary, as for \`orchard engine start\`
`,
  'models rm': `usage: orchard models rm ID

Delete model ID (every revision) from the Hugging Face cache. Exit 1 when it is not cached.
`,
}

class UsageError extends Error {}

/** A failure reported as one line with exit code 1 (by `main`). */
function fail(message: string): never {
  throw new Error(message)
}

interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

function parse(args: string[], options: ParseArgsConfig['options'], allowPositionals: boolean): Parsed {
  try {
    const r = parseArgs({
      args,
      options: { help: { type: 'boolean', short: 'h' }, ...options },
      allowPositionals,
      strict: true,
    })
    return { values: r.values as Parsed['values'], positionals: r.positionals }
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

function num(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name}: expected a positive number, got '${String(v)}'`)
  return n
}

// ---------------------------------------------------------------------------------------
// Progress rendering (stderr; redrawn in place on a terminal, a line per 10% otherwise)

function fmtBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let i = 0
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

function progressBar(label: string): { update: (p: DownloadProgress) => void; done: () => void } {
  const tty = process.stderr.isTTY === true
  let lastDecile = -1
  let lastDraw = 0
  let drawn = false
  const render = (p: DownloadProgress) => {
    const total = p.bytesTotal
    if (total && total > 0) {
      const frac = Math.min(1, p.bytesDownloaded / total)
      const width = 30
      const fill = Math.round(frac * width)
      return `${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${fmtBytes(p.bytesDownloaded)}/${fmtBytes(total)}`
    }
    return `${label} ${fmtBytes(p.bytesDownloaded)}`
  }
  return {
    update(p) {
      if (tty) {
        const now = Date.now()
        if (now - lastDraw < 100 && p.bytesDownloaded !== p.bytesTotal) return
        lastDraw = now
        process.stderr.write(`\r${render(p).padEnd(78)}`)
        drawn = true
      } else {
        const decile = p.bytesTotal ? Math.floor((10 * p.bytesDownloaded) / p.bytesTotal) : -1
        if (decile > lastDecile) {
          lastDecile = decile
          process.stderr.write(`${render(p)}\n`)
        }
      }
    },
    done() {
      if (tty && drawn) process.stderr.write('\n')
    },
  }
}

// ---------------------------------------------------------------------------------------
// Commands

async function engineCommand(sub: string | undefined, rest: string[]): Promise<number> {
  switch (sub) {
    case 'start': {
      const a = parse(
        rest,
        { binary: { type: 'string' }, install: { type: 'boolean' }, 'startup-timeout': { type: 'string' } },
        false,
      )
      if (a.values.help) return help('engine start')
      const { Engine } = await import('./engine')
      const bar = progressBar('engine')
      const engine = await Engine.start({
        binary: a.values.binary as string | undefined,
        startupTimeoutMs: num(a.values['startup-timeout'], '--startup-timeout'),
        install: a.values.install ? { onProgress: (p) => bar.update(p) } : false,
      })
      bar.done()
      process.stdout.write(
        `engine pid ${engine.pid} (${engine.launched ? 'launched' : 'attached'}), cache root ${engine.cacheRoot}\n`,
      )
      process.stderr.write('holding the engine; press Ctrl-C to release it\n')
      await new Promise<void>((resolve) => {
        const keepAlive = setInterval(() => undefined, 1 << 30)
        const stop = () => {
          clearInterval(keepAlive)
          resolve()
        }
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
      })
      await engine.close()
      return 0
    }
    case 'stop': {
      const a = parse(rest, { timeout: { type: 'string' } }, false)
      if (a.values.help) return help('engine stop')
      const { Engine } = await import('./engine')
      const secs = num(a.values.timeout, '--timeout')
      const pid = await Engine.stop({ graceMs: secs === undefined ? undefined : Math.round(secs * 1000) })
      process.stdout.write(pid === null ? 'no engine running\n' : `stopped engine pid ${pid}\n`)
      return 0
    }
    case 'status': {
      const a = parse(rest, { json: { type: 'boolean' } }, false)
      if (a.values.help) return help('engine status')
      const { addon } = await import('./native')
      const { nativeSync } = await import('./errors')
      const { cacheRoot: root, pid: found } = nativeSync(() => addon().engineStatus())
      const pid = found ?? null
      if (a.values.json) process.stdout.write(`${JSON.stringify({ running: pid !== null, pid, cacheRoot: root })}\n`)
      else
        process.stdout.write(
          pid === null
            ? `no engine running (cache root ${root})\n`
            : `engine running, pid ${pid} (cache root ${root})\n`,
        )
      return pid === null ? 3 : 0
    }
    case 'logs': {
      const a = parse(rest, { lines: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' } }, false)
      if (a.values.help) return help('engine logs')
      const { addon } = await import('./native')
      const { nativeSync } = await import('./errors')
      const log = path.join(nativeSync(() => addon().engineStatus()).cacheRoot, 'engine.log')
      if (!existsSync(log)) fail(`no engine log at ${log}`)
      const n = num(a.values.lines, '--lines')
      const text = readFileSync(log, 'utf8')
      const lines = text.split('\n')
      if (lines.at(-1) === '') lines.pop()
      const shown = n === undefined ? lines : lines.slice(-n)
      if (shown.length) process.stdout.write(`${shown.join('\n')}\n`)
      if (!a.values.follow) return 0
      let pos = Buffer.byteLength(text)
      await new Promise<void>((resolve) => {
        const w = watch(log, () => {
          const size = statSync(log).size
          if (size < pos) pos = 0
          if (size > pos) {
            createReadStream(log, { start: pos, end: size - 1 }).pipe(process.stdout, { end: false })
            pos = size
          }
        })
        process.once('SIGINT', () => {
          w.close()
          resolve()
        })
      })
      return 0
    }
    case 'install': {
      const a = parse(
        rest,
        { channel: { type: 'string' }, version: { type: 'string' }, reinstall: { type: 'boolean' } },
        false,
      )
      if (a.values.help) return help('engine install')
      const { installEngine } = await import('./install/install')
      const bar = progressBar('engine')
      const r = await installEngine({
        channel: a.values.channel as string | undefined,
        version: a.values.version as string | undefined,
        reinstall: a.values.reinstall === true,
        onProgress: (p) => bar.update(p),
      })
      bar.done()
      process.stderr.write(
        r.installed ? `installed engine ${r.version}\n` : `engine ${r.version} is already installed\n`,
      )
      process.stdout.write(`${r.path}\n`)
      return 0
    }
    default:
      throw new UsageError(
        sub ? `unknown engine command '${sub}'` : 'engine: expected start, stop, status, logs or install',
      )
  }
}

async function modelsCommand(sub: string | undefined, rest: string[]): Promise<number> {
  const models = await import('./models')
  switch (sub) {
    case 'pull': {
      const a = parse(rest, { revision: { type: 'string' } }, true)
      if (a.values.help) return help('models pull')
      const id = a.positionals[0]
      if (!id || a.positionals.length > 1) throw new UsageError('models pull: expected one model id (org/name)')
      const bar = progressBar(id)
      const r = await models.pull(id, {
        revision: a.values.revision as string | undefined,
        onProgress: (p) => bar.update(p),
      })
      bar.done()
      process.stdout.write(`${r.path}\n`)
      return 0
    }
    case 'list': {
      const a = parse(rest, { json: { type: 'boolean' } }, false)
      if (a.values.help) return help('models list')
      const list = await models.list()
      if (a.values.json) {
        process.stdout.write(`${JSON.stringify(list)}\n`)
        return 0
      }
      if (list.length === 0) {
        process.stderr.write(`no models in ${models.cacheDir()}\n`)
        return 0
      }
      const w = Math.max(...list.map((m) => m.id.length), 5)
      process.stdout.write(`${'MODEL'.padEnd(w)}  ${'SIZE'.padStart(9)}  REFS\n`)
      for (const m of list) {
        const refs = Object.entries(m.refs).map(([r, c]) => `${r}@${c.slice(0, 8)}`)
        process.stdout.write(
          `${m.id.padEnd(w)}  ${fmtBytes(m.sizeBytes).padStart(9)}  ${refs.join(', ') || m.snapshots.map((s) => s.slice(0, 8)).join(', ')}\n`,
        )
      }
      return 0
    }
    case 'rm': {
      const a = parse(rest, {}, true)
      if (a.values.help) return help('models rm')
      const id = a.positionals[0]
      if (!id || a.positionals.length > 1) throw new UsageError('models rm: expected one model id (org/name)')
      if (!(await models.remove(id))) fail(`model '${id}' is not in the cache ${models.cacheDir()}`)
      process.stdout.write(`removed ${id}\n`)
      return 0
    }
    default:
      throw new UsageError(sub ? `unknown models command '${sub}'` : 'models: expected pull, list or rm')
  }
}

/** `orchard serve`: load the models, serve the OpenAI API, shut down cleanly on a signal. */
async function serveCommand(rest: string[]): Promise<number> {
  const a = parse(
    rest,
    {
      host: { type: 'string' },
      port: { type: 'string' },
      model: { type: 'string', multiple: true },
      'api-key': { type: 'string' },
      grace: { type: 'string' },
      binary: { type: 'string' },
    },
    false,
  )
  if (a.values.help) return help('serve')
  const host = (a.values.host as string | undefined) ?? '127.0.0.1'
  const portText = (a.values.port as string | undefined) ?? '8000'
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port: expected 0 to 65535, got '${portText}'`)
  const grace = num(a.values.grace, '--grace') ?? 10
  const apiKey = (a.values['api-key'] as string | undefined) ?? (process.env.ORCHARD_API_KEY || undefined)
  const models = (a.values.model as string[] | undefined) ?? []
  const { Engine } = await import('./engine')
  const { createServer } = await import('./server')
  const engine = await Engine.start({ binary: a.values.binary as string | undefined })
  try {
    for (const id of models) {
      const bar = progressBar(id)
      await engine.loadModel(id, { onProgress: (p) => bar.update(p) })
      bar.done()
      process.stderr.write(`loaded ${id}\n`)
    }
    const server = createServer({ engine, models: models.length > 0 ? models : undefined, apiKey })
    const { url } = await server.listen({ host, port })
    if (!isLoopback(host) && apiKey === undefined) {
      process.stderr.write(
        `orchard: warning: listening on ${host} without --api-key: anyone who can reach this port can use the engine\n`,
      )
    }
    process.stdout.write(`serving ${url}/v1\n`)
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    process.stderr.write('shutting down\n')
    await server.close({ graceMs: Math.round(grace * 1000) })
  } finally {
    await engine.close()
  }
  return 0
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}

/** `orchard chat`: one streamed answer, or an interactive session on a terminal. */
async function chatCommand(rest: string[]): Promise<number> {
  const a = parse(
    rest,
    {
      model: { type: 'string' },
      system: { type: 'string' },
      'max-tokens': { type: 'string' },
      seed: { type: 'string' },
      binary: { type: 'string' },
    },
    true,
  )
  if (a.values.help) return help('chat')
  const maxTokens = num(a.values['max-tokens'], '--max-tokens')
  const seedText = a.values.seed as string | undefined
  const seed = seedText === undefined ? undefined : Number(seedText)
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0))
    throw new UsageError(`--seed: expected a whole number, got '${seedText}'`)
  let prompt: string | undefined = a.positionals.length > 0 ? a.positionals.join(' ') : undefined
  const interactive = prompt === undefined && process.stdin.isTTY === true
  if (prompt === undefined && !interactive) {
    prompt = (await readAll(process.stdin)).trim()
    if (prompt === '') throw new UsageError('chat: expected a prompt (an argument, or text on stdin)')
  }
  const { Engine } = await import('./engine')
  const engine = await Engine.start({ binary: a.values.binary as string | undefined })
  try {
    let model = a.values.model as string | undefined
    if (model !== undefined) await engine.loadModel(model)
    else {
      const reply = await engine.managementCommand({ type: 'list_models' })
      const data = (reply.data?.list_models ?? reply.data) as { models?: Array<{ requested_id?: string }> } | undefined
      const ids = (data?.models ?? []).flatMap((m) => (typeof m.requested_id === 'string' ? [m.requested_id] : []))
      if (ids.length !== 1)
        fail(
          ids.length === 0
            ? 'no model is loaded; pass --model ID'
            : `${ids.length} models are loaded; pick one with --model (${ids.join(', ')})`,
        )
      model = ids[0]!
    }
    const client = engine.client()
    const system: Array<{ role: Role; content: string }> = a.values.system
      ? [{ role: 'system', content: a.values.system as string }]
      : []
    const options = { ...(maxTokens === undefined ? {} : { maxTokens }), ...(seed === undefined ? {} : { seed }) }
    const dim = (t: string, tty: boolean) => (tty ? `\x1b[2m${t}\x1b[22m` : t)

    if (!interactive) {
      const stream = client.chat(model, [...system, { role: 'user', content: prompt! }], options)
      const stop = () => void stream.cancel()
      process.once('SIGINT', stop)
      try {
        for await (const d of stream) {
          if (d.reasoning) process.stderr.write(dim(d.reasoning, process.stderr.isTTY === true))
          if (d.text) process.stdout.write(d.text)
        }
      } finally {
        process.off('SIGINT', stop)
      }
      process.stdout.write('\n')
      return 0
    }

    const { createInterface } = await import('node:readline')
    const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: '> ' })
    const history: Array<{ role: Role; content: string }> = [...system]
    let current: AbortController | null = null
    rl.on('SIGINT', () => {
      if (current) current.abort()
      else rl.close()
    })
    process.stdout.write(`chatting with ${model}; /reset starts over, /exit leaves, Ctrl-C stops an answer\n`)
    rl.prompt()
    for await (const line of rl) {
      const text = line.trim()
      if (text === '/exit') break
      if (text === '/reset') {
        history.splice(system.length)
        process.stdout.write('(conversation reset)\n')
      } else if (text !== '') {
        history.push({ role: 'user', content: text })
        current = new AbortController()
        let answer = ''
        try {
          for await (const d of client.chat(model, history, { ...options, signal: current.signal })) {
            if (d.reasoning) process.stdout.write(dim(d.reasoning, true))
            if (d.text) {
              answer += d.text
              process.stdout.write(d.text)
            }
          }
          history.push({ role: 'assistant', content: answer })
          process.stdout.write('\n')
        } catch (e) {
          if (!current.signal.aborted) throw e
          // A stopped answer leaves no turn behind: ask again or go on.
          history.pop()
          process.stdout.write(dim(' (stopped)\n', true))
        } finally {
          current = null
        }
      }
      rl.prompt()
    }
    rl.close()
    return 0
  } finally {
    await engine.close()
  }
}

async function readAll(input: NodeJS.ReadableStream): Promise<string> {
  let text = ''
  for await (const chunk of input) text += chunk.toString()
  return text
}

function help(topic: string): number {
  process.stdout.write(HELP[topic] ?? USAGE)
  return 0
}

export async function main(argv: string[]): Promise<number> {
  const [group, sub, ...rest] = argv
  try {
    if (group === undefined || group === '--help' || group === '-h' || group === 'help') {
      process.stdout.write(USAGE)
      return group === undefined ? 2 : 0
    }
    if (group === '--version' || group === '-v' || group === 'version') {
      const { packageVersion } = await import('./platform')
      process.stdout.write(`${packageVersion()}\n`)
      return 0
    }
    if ((sub === '--help' || sub === '-h') && (group === 'engine' || group === 'models')) {
      process.stdout.write(groupHelp(group))
      return 0
    }
    if (group === 'engine') return await engineCommand(sub, rest)
    if (group === 'models') return await modelsCommand(sub, rest)
    if (group === 'serve') return await serveCommand(argv.slice(1))
    if (group === 'chat') return await chatCommand(argv.slice(1))
    throw new UsageError(`unknown command '${group}'`)
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`orchard: ${e.message}\nRun \`orchard --help\` for usage.\n`)
      return 2
    }
    const err = e as { message?: string; code?: string }
    const msg = (err.message ?? String(e)).trim().replace(/\s*\n\s*/g, ' ')
    process.stderr.write(`orchard: ${msg}${err.code ? ` [${err.code}]` : ''}\n`)
    return 1
  }
}

if (require.main === module) {
  void (async () => {
    const code = await main(process.argv.slice(2))
    process.exitCode = code
  })()
}
