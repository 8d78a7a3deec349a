/**
 * One task shared by every caller that asks for the same key while it runs (a model
 * download, a model load). Each caller gets the task's result, its own progress listener,
 * and may stop waiting with its own signal; `cancel(key)` stops the task for everyone, and
 * with `abandon: 'abort'` the task also stops once its last caller has left. Internal.
 */

export interface Caller<P> {
  signal?: AbortSignal
  onProgress?: (progress: P) => void
}

interface Task<T, P> {
  promise: Promise<T>
  controller: AbortController
  waiters: number
  listeners: Set<(progress: P) => void>
}

export class SharedTasks<T, P> {
  readonly #tasks = new Map<string, Task<T, P>>()

  /**
   * @param abandon `'abort'`: a task nobody waits for any more is aborted; `'finish'`: it runs on.
   */
  constructor(private readonly abandon: 'abort' | 'finish') {}

  /**
   * Wait for the task of `key`, starting it with `start` when none runs. `start` gets the
   * task's signal (aborted by `cancel` or abandonment) and a progress reporter.
   */
  join(
    key: string,
    start: (signal: AbortSignal, progress: (p: P) => void) => Promise<T>,
    caller: Caller<P>,
    aborted: () => Error,
  ): Promise<T> {
    if (caller.signal?.aborted) return Promise.reject(aborted())
    let task = this.#tasks.get(key)
    if (task?.controller.signal.aborted) task = undefined
    if (!task) task = this.#start(key, start)
    const shared = task
    shared.waiters++
    const mine = caller.onProgress
    if (mine) shared.listeners.add(mine)
    let left = false
    const leave = (abandoned: boolean) => {
      if (left) return
      left = true
      if (mine) shared.listeners.delete(mine)
      if (--shared.waiters === 0 && abandoned && this.abandon === 'abort') {
        shared.controller.abort()
        if (this.#tasks.get(key) === shared) this.#tasks.delete(key)
      }
    }
    const signal = caller.signal
    if (!signal) return shared.promise.finally(() => leave(false))
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        leave(true)
        reject(aborted())
      }
      signal.addEventListener('abort', onAbort, { once: true })
      shared.promise.then(resolve, reject).finally(() => {
        signal.removeEventListener('abort', onAbort)
        leave(false)
      })
    })
  }

  #start(key: string, start: (signal: AbortSignal, progress: (p: P) => void) => Promise<T>): Task<T, P> {
    const controller = new AbortController()
    const listeners = new Set<(p: P) => void>()
    const promise = start(controller.signal, (p) => {
      for (const l of listeners) l(p)
    })
    const task: Task<T, P> = { promise, controller, waiters: 0, listeners }
    this.#tasks.set(key, task)
    const done = () => {
      if (this.#tasks.get(key) === task) this.#tasks.delete(key)
    }
    promise.then(done, done)
    return task
  }

  /** True while the task of `key` runs. */
  running(key: string): boolean {
    return this.#tasks.has(key)
  }

  /** Stop the task of `key` for every caller. False when none was running. */
  cancel(key: string): boolean {
    const task = this.#tasks.get(key)
    if (!task) return false
    this.#tasks.delete(key)
    task.controller.abort()
    return true
  }
}
