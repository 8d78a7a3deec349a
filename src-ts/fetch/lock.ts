/**
 * A cross-process lock file made by exclusive creation (`link(2)` of a complete temp file,
 * so the lock never exists half-written). The file holds `{pid, host, time}`; a lock whose
 * pid is dead on this host, or that is unreadable and older than a few seconds (another
 * tool's empty `filelock` file), is stale and is taken over. Internal.
 */

import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { AbortError, IoError, TimeoutError } from '../errors'

interface LockBody {
  pid: number
  host: string
  time: number
}

const UNREADABLE_STALE_MS = 10_000

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function isStale(file: string): Promise<{ stale: boolean; ino: number } | null> {
  let st
  let text
  try {
    st = await fs.stat(file)
    text = await fs.readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
  let body: Partial<LockBody> | null = null
  try {
    body = JSON.parse(text) as Partial<LockBody>
  } catch {
    body = null
  }
  if (!body || typeof body.pid !== 'number') {
    return { stale: Date.now() - st.mtimeMs > UNREADABLE_STALE_MS, ino: st.ino }
  }
  if (body.host && body.host !== os.hostname()) return { stale: false, ino: st.ino }
  return { stale: body.pid !== process.pid && !pidAlive(body.pid), ino: st.ino }
}

export interface LockOptions {
  timeoutMs: number
  signal?: AbortSignal
}

export interface HeldLock {
  release(): Promise<void>
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError('aborted while waiting for a lock'))
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(new AbortError('aborted while waiting for a lock'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Take `file` exclusively, waiting up to `timeoutMs` for another holder. */
export async function acquireLock(file: string, options: LockOptions): Promise<HeldLock> {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const deadline = Date.now() + options.timeoutMs
  const body: LockBody = { pid: process.pid, host: os.hostname(), time: Date.now() }
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  await fs.writeFile(tmp, JSON.stringify(body))
  let pause = 20
  try {
    for (;;) {
      try {
        await fs.link(tmp, file)
        const st = await fs.stat(file)
        let released = false
        return {
          async release() {
            if (released) return
            released = true
            // Only remove the lock if it is still ours.
            const now = await fs.stat(file).catch(() => null)
            if (now && now.ino === st.ino) await fs.unlink(file).catch(() => undefined)
          },
        }
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code !== 'EEXIST') throw new IoError(`cannot create lock ${file}: ${(e as Error).message}`, { cause: e })
      }
      const stale = await isStale(file)
      if (stale?.stale) {
        // Move it aside first, so two waiters cannot both delete a fresh lock.
        const aside = `${file}.stale.${process.pid}.${randomBytes(4).toString('hex')}`
        try {
          await fs.rename(file, aside)
          const st = await fs.stat(aside)
          if (st.ino !== stale.ino) await fs.link(aside, file).catch(() => undefined) // someone else's fresh lock: put it back
          await fs.unlink(aside).catch(() => undefined)
        } catch {
          // gone already
        }
        continue
      }
      if (Date.now() >= deadline) {
        throw new TimeoutError(`another process held ${file} for more than ${options.timeoutMs} ms`)
      }
      await sleep(Math.min(pause, Math.max(1, deadline - Date.now())), options.signal)
      pause = Math.min(pause * 2, 250)
    }
  } finally {
    await fs.unlink(tmp).catch(() => undefined)
  }
}
