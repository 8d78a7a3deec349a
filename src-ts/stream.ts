/** ChatStream: an awaitable, once-iterable stream of deltas for one request. */

import { AbortError, EngineError, OrchardError, fromNative } from './errors'
import type { ChatChoice, ChatDelta, ChatResult, Usage } from './types'

import type { NativeChat } from '../index'

interface Sequence {
  promptIndex: number
  candidateIndex: number
  text: string
  tokens: number[]
  finishReason: string | null
  cumulativeLogprob: number | null
  generationLen: number
  reasoningTokens: number
  promptTokens: number
  cachedTokens: number
}

/** Folds deltas into per-sequence text and usage. */
class Aggregator {
  readonly #sequences = new Map<string, Sequence>()
  requestId = 0

  add(d: ChatDelta): void {
    this.requestId = d.requestId
    const p = d.promptIndex ?? 0
    const c = d.candidateIndex ?? 0
    const key = `${p}:${c}`
    let s = this.#sequences.get(key)
    if (!s) {
      s = {
        promptIndex: p,
        candidateIndex: c,
        text: '',
        tokens: [],
        finishReason: null,
        cumulativeLogprob: null,
        generationLen: 0,
        reasoningTokens: 0,
        promptTokens: 0,
        cachedTokens: 0,
      }
      this.#sequences.set(key, s)
    }
    if (d.content) s.text += d.content
    if (d.tokens.length) s.tokens.push(...d.tokens)
    if (d.cumulativeLogprob != null) s.cumulativeLogprob = d.cumulativeLogprob
    if (d.generationLen != null) s.generationLen = Math.max(s.generationLen, d.generationLen)
    if (d.reasoningTokens != null) s.reasoningTokens = Math.max(s.reasoningTokens, d.reasoningTokens)
    if (d.promptTokenCount != null) s.promptTokens = Math.max(s.promptTokens, d.promptTokenCount)
    if (d.cachedTokenCount != null) s.cachedTokens = Math.max(s.cachedTokens, d.cachedTokenCount)
    if (d.isFinal) s.finishReason = d.finishReason ?? null
  }

  result(keep: number): ChatResult {
    const all = [...this.#sequences.values()]
    let chosen = all
    if (all.length > keep) {
      // Rank like the reference: cumulative logprob per generated token, best first.
      const score = (s: Sequence) => (s.cumulativeLogprob ?? -Infinity) / Math.max(1, s.generationLen || s.tokens.length)
      chosen = [...all].sort((a, b) => score(b) - score(a)).slice(0, keep)
    } else {
      chosen = [...all].sort((a, b) => a.promptIndex - b.promptIndex || a.candidateIndex - b.candidateIndex)
    }
    const choices: ChatChoice[] = chosen.map((s, index) => ({
      index,
      text: s.text,
      finishReason: s.finishReason,
      tokens: s.tokens,
      cumulativeLogprob: s.cumulativeLogprob,
    }))
    const promptTokens = all.reduce((m, s) => Math.max(m, s.promptTokens), 0)
    const reasoningTokens = all.reduce((n, s) => n + s.reasoningTokens, 0)
    const completionTokens = all.reduce(
      (n, s) => n + Math.max(0, (s.generationLen || s.tokens.length) - s.reasoningTokens),
      0,
    )
    const usage: Usage = {
      promptTokens,
      completionTokens,
      reasoningTokens,
      cachedTokens: all.reduce((m, s) => Math.max(m, s.cachedTokens), 0),
      totalTokens: promptTokens + completionTokens + reasoningTokens,
    }
    return {
      text: choices[0]?.text ?? '',
      finishReason: choices[0]?.finishReason ?? null,
      usage,
      choices,
      requestId: this.requestId,
    }
  }
}

type Outcome = { ok: true; value: ChatResult } | { ok: false; error: unknown }

function abortFromSignal(signal: AbortSignal | undefined): AbortError {
  const reason: unknown = signal?.reason
  if (reason instanceof AbortError) return reason
  return new AbortError('The chat request was aborted', reason === undefined ? undefined : { cause: reason })
}

/**
 * A streamed chat request. Iterate it once with `for await` to receive {@link ChatDelta}s,
 * or `await` it for the aggregated {@link ChatResult}. Leaving the loop early, calling
 * {@link ChatStream.cancel} or aborting the `signal` stops the engine's work and ends the
 * stream with an {@link AbortError}.
 */
export class ChatStream implements AsyncIterable<ChatDelta>, PromiseLike<ChatResult> {
  readonly #handle: Promise<NativeChat>
  readonly #signal: AbortSignal | undefined
  readonly #keep: number
  readonly #aggregate = new Aggregator()
  #started = false
  #cancelled = false
  #native: NativeChat | undefined
  #outcome: Outcome | undefined
  #waiters: Array<(o: Outcome) => void> = []

  /** @internal */
  constructor(handle: Promise<NativeChat>, options: { signal?: AbortSignal; keep: number }) {
    this.#handle = handle
    this.#signal = options.signal
    this.#keep = options.keep
    // A stream nobody consumes must not surface as an unhandled rejection.
    handle.catch(() => undefined)
  }

  [Symbol.asyncIterator](): AsyncIterator<ChatDelta> {
    if (this.#started) {
      throw new OrchardError('INVALID_REQUEST', 'a ChatStream can be consumed only once (iterate it or await it, not both)')
    }
    this.#started = true
    return this.#iterate()
  }

  async *#iterate(): AsyncGenerator<ChatDelta, void, undefined> {
    const signal = this.#signal
    let complete = false
    let native: NativeChat | undefined
    const onAbort = () => void this.cancel()
    try {
      if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
      try {
        native = await this.#handle
      } catch (e) {
        throw fromNative(e)
      }
      this.#native = native
      signal?.addEventListener('abort', onAbort, { once: true })
      if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
      for (;;) {
        let batch: string | null
        try {
          batch = await native.next()
        } catch (e) {
          if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
          throw fromNative(e)
        }
        if (batch === null) break
        // The native side writes the public ChatDelta shape; one parse per batch.
        for (const delta of JSON.parse(batch) as ChatDelta[]) {
          if (delta.finishReason === 'error' || (delta.isFinal && delta.errorMessage != null)) {
            throw new EngineError('ENGINE', delta.errorMessage ?? 'the engine reported an error')
          }
          this.#aggregate.add(delta)
          yield delta
        }
      }
      complete = true
      this.#settle({ ok: true, value: this.#aggregate.result(this.#keep) })
    } catch (e) {
      this.#settle({ ok: false, error: e })
      throw e
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (!complete) {
        this.#cancelled = true
        if (!this.#outcome) this.#settle({ ok: false, error: new AbortError('The chat stream was closed before it finished') })
        if (native) await native.cancel().catch(() => undefined)
      }
    }
  }

  #settle(o: Outcome): void {
    if (this.#outcome) return
    this.#outcome = o
    for (const w of this.#waiters.splice(0)) w(o)
  }

  /** The request id the engine knows this request by (once it has been sent). */
  async requestId(): Promise<number> {
    try {
      return (await this.#handle).requestId
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * The aggregated result. Before iteration it consumes the stream itself; during or after
   * iteration it resolves when the stream ends.
   */
  finalResult(): Promise<ChatResult> {
    if (!this.#started) {
      const it = this[Symbol.asyncIterator]()
      void (async () => {
        try {
          while (!(await it.next()).done) {
            /* aggregation happens inside the iterator */
          }
        } catch {
          /* the outcome records the error */
        }
      })()
    }
    const unwrap = (o: Outcome): ChatResult => {
      if (o.ok) return o.value
      throw o.error
    }
    if (this.#outcome) return Promise.resolve(this.#outcome).then(unwrap)
    return new Promise<Outcome>((resolve) => this.#waiters.push(resolve)).then(unwrap)
  }

  then<R1 = ChatResult, R2 = never>(
    onfulfilled?: ((value: ChatResult) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.finalResult().then(onfulfilled, onrejected)
  }

  /** Stop the request: the engine is told to cancel and the stream ends with an AbortError. */
  async cancel(): Promise<void> {
    this.#cancelled = true
    const native = this.#native ?? (await this.#handle.catch(() => undefined))
    if (native) await native.cancel().catch(() => undefined)
  }
}
