/**
 * The cross-process lock of `install.lock` and Hub blob downloads: the core's exclusive
 * `flock` (crates/orchard-core/src/lock.rs), the same lock `engine.lock` uses. The kernel
 * drops it when its holder exits, so a lock file left behind is never stale, and waiters
 * queue fairly on a native thread. Internal.
 */

import { promises as fs } from 'node:fs'
import path from 'node:path'

import { AbortError, native, nativeSync } from '../errors'
import { addon } from '../native'

export interface LockOptions {
  timeoutMs: number
  signal?: AbortSignal
}

export interface HeldLock {
  /** Give the lock back. Idempotent. */
  release(): void
}

/** Take `file` exclusively (created 0600 when missing), waiting up to `timeoutMs` for another holder. */
export async function acquireLock(file: string, options: LockOptions): Promise<HeldLock> {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const { signal } = options
  if (signal?.aborted) throw new AbortError(`aborted while waiting for the lock ${file}`)
  const request = nativeSync(() => new (addon().NativeLockRequest)(file))
  const onAbort = () => nativeSync(() => request.cancel())
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const held = await native(() => request.acquire(options.timeoutMs))
    return { release: () => nativeSync(() => held.release()) }
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
