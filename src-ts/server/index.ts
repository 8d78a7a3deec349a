/**
 * `orchard-ts/server`: an OpenAI-compatible HTTP server over an {@link Engine}, which the
 * official OpenAI clients accept.
 *
 * ```ts
 * import { Engine } from 'orchard-ts'
 * import { createServer } from 'orchard-ts/server'
 *
 * const engine = await Engine.start()
 * await engine.loadModel('meta-llama/Llama-3.2-1B-Instruct')
 * const server = createServer({ engine, models: ['meta-llama/Llama-3.2-1B-Instruct'] })
 * const { url } = await server.listen({ port: 8000 })   // 127.0.0.1 unless told otherwise
 * ```
 *
 * Endpoints: `POST /v1/chat/completions`, `POST /v1/responses`, `POST /v1/completions`,
 * `POST /v1/embeddings`, `POST /v1/audio/speech`, `POST /v1/audio/transcriptions`,
 * `POST /v1/images/generations`, `POST /v1/images/edits`, `GET /v1/models`, `GET /v1/models/{id}`.
 * See docs/server.md.
 */

import { timingSafeEqual } from 'node:crypto'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

import { createAdaptorServer } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { cors } from 'hono/cors'
import { type SSEStreamingApi, streamSSE } from 'hono/streaming'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

import type { Engine } from '../engine'
import { InvalidRequestError } from '../errors'
import type { ResponseObject } from '../responses/types'
import { badRequest, HttpError, type OpenAIErrorBody, type ParamNames, toHttpError } from './errors'
import {
  ChunkWriter,
  chatCompletion,
  completionIndex,
  completionLogprobs,
  embeddingList,
  finishReason,
  newId,
  now,
  sumUsage,
  type TextCompletion,
  usage,
} from './format'
import { mapChatRequest, mapCompletionRequest, mapEmbeddingsRequest, mapResponsesRequest } from './mapping'
import { modalRoutes } from './modal'

export type { OpenAIErrorBody } from './errors'
export { HttpError } from './errors'
export type { ChatCompletion, ChatCompletionChunk, EmbeddingList, EmbeddingObject, TextCompletion } from './format'
export { IGNORED_FIELDS } from './mapping'

export interface ServerOptions {
  /** The engine to serve (the server never closes it). */
  engine: Engine
  /**
   * The model ids served and listed by `GET /v1/models`; a request for any other model gets
   * a 404. Default: every model the engine has loaded (the engine decides per request).
   */
  models?: string[]
  /** Require `Authorization: Bearer <apiKey>` on every `/v1` request. */
  apiKey?: string
  /** Answer CORS requests: `true` for any origin, or the allowed origin(s). Default off. */
  cors?: boolean | string | string[]
  /** Largest request body in bytes, uploads included (default 32 MiB: images travel as data URLs). */
  bodyLimit?: number
}

export interface ListenOptions {
  /** Interface to listen on (default `127.0.0.1`: loopback only). */
  host?: string
  /** Port (default 8000; 0 picks a free one). */
  port?: number
}

export interface ServerAddress {
  host: string
  port: number
  /** `http://host:port`, the base URL of the API is this plus `/v1`. */
  url: string
}

export interface CloseOptions {
  /** How long in-flight requests may take to finish before they are cancelled (default 10 000 ms). */
  graceMs?: number
}

export interface OrchardServer {
  /** Answer one request (the Fetch API handler; use it to mount the API in another server). */
  fetch(request: Request): Promise<Response>
  /** Listen on `host:port`. */
  listen(options?: ListenOptions): Promise<ServerAddress>
  /**
   * Stop accepting requests, let in-flight ones finish within `graceMs`, cancel the rest
   * (their engine requests included) and close every connection. Idempotent.
   */
  close(options?: CloseOptions): Promise<void>
  /** Requests being answered now. */
  readonly inFlight: number
}

const DEFAULT_BODY_LIMIT = 32 * 1024 * 1024

/** The header carrying the engine's request id (for logs and cancellation checks). */
export const REQUEST_ID_HEADER = 'x-request-id'

const SHUTDOWN_CANCELLED = new HttpError(503, 'The server is shutting down; the request was cancelled', {
  code: 'shutting_down',
})

interface InFlight {
  controller: AbortController
  done: Promise<void>
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

function errorResponse(c: Context, e: HttpError): Response {
  return c.json<OpenAIErrorBody>(e.body(), e.status as ContentfulStatusCode)
}

export function createServer(options: ServerOptions): OrchardServer {
  if (options === null || typeof options !== 'object' || options.engine === undefined) {
    throw new InvalidRequestError('engine: expected an Engine (from Engine.start())')
  }
  const { engine } = options
  const served = options.models === undefined ? null : new Set(options.models)
  if (
    options.models !== undefined &&
    (!Array.isArray(options.models) || options.models.some((m) => typeof m !== 'string' || m.length === 0))
  ) {
    throw new InvalidRequestError('models: expected an array of model ids')
  }
  const apiKey = options.apiKey
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey.length === 0)) {
    throw new InvalidRequestError('apiKey: expected a non-empty string')
  }
  const limit = options.bodyLimit ?? DEFAULT_BODY_LIMIT
  if (!Number.isInteger(limit) || limit <= 0)
    throw new InvalidRequestError('bodyLimit: expected a positive number of bytes')
  const created = now()
  const inFlight = new Set<InFlight>()
  let closing = false
  let server: Server | undefined

  /** Run `work` as an in-flight request with its own abort controller, linked to the client's connection. */
  function begin(c: Context): { controller: AbortController; end: () => void } {
    const controller = new AbortController()
    const raw = c.req.raw.signal
    const onGone = () => controller.abort(new Error('the client went away'))
    if (raw.aborted) onGone()
    else raw.addEventListener('abort', onGone, { once: true })
    let end!: () => void
    const entry: InFlight = { controller, done: new Promise<void>((resolve) => (end = resolve)) }
    inFlight.add(entry)
    return {
      controller,
      end: () => {
        raw.removeEventListener('abort', onGone)
        inFlight.delete(entry)
        end()
      },
    }
  }

  function checkModel(model: string): void {
    if (served && !served.has(model)) {
      throw new HttpError(404, `The model '${model}' does not exist or is not served here`, {
        param: 'model',
        code: 'model_not_found',
      })
    }
  }

  async function json(c: Context): Promise<unknown> {
    try {
      return await c.req.json()
    } catch {
      throw new HttpError(400, 'body: expected a JSON object (Content-Type: application/json)', {
        param: 'body',
        code: 'invalid_json',
      })
    }
  }

  /** Stream `produce`'s items as SSE; errors after the headers become an error event. */
  function sse(
    c: Context,
    controller: AbortController,
    end: () => void,
    names: ParamNames,
    produce: (s: SSEStreamingApi) => Promise<void>,
  ): Response {
    return streamSSE(c, async (s) => {
      s.onAbort(() => controller.abort(new Error('the client went away')))
      try {
        await produce(s)
      } catch (e) {
        // A client that went away has nobody to tell; one cut off by shutdown is told why.
        const error = controller.signal.aborted ? (closing ? SHUTDOWN_CANCELLED : null) : toHttpError(e, names)
        if (error) await s.writeSSE({ data: JSON.stringify(error.body()) })
      } finally {
        end()
      }
    })
  }

  /**
   * Serve one generation request: `send` starts it (its engine request id becomes the
   * `x-request-id` header), then `respond` answers at once (a JSON response) or returns what
   * to stream as SSE. The request is in flight, with its own abort signal, until it is
   * answered or its stream ends; errors before the answer become OpenAI error responses.
   */
  async function generate<S extends { requestId(): Promise<number> }>(
    c: Context,
    model: string,
    names: ParamNames,
    send: (signal: AbortSignal) => S,
    respond: (stream: S, signal: AbortSignal) => Promise<Response | ((s: SSEStreamingApi) => Promise<void>)>,
  ): Promise<Response> {
    checkModel(model)
    const { controller, end } = begin(c)
    let streaming = false
    try {
      const stream = send(controller.signal)
      c.header(REQUEST_ID_HEADER, String(await stream.requestId()))
      const answer = await respond(stream, controller.signal)
      if (typeof answer !== 'function') return answer
      streaming = true
      return sse(c, controller, end, names, answer)
    } catch (e) {
      throw toHttpError(e, names)
    } finally {
      if (!streaming) end()
    }
  }

  const app = new Hono()
  app.onError((err, c) => errorResponse(c, toHttpError(err)))
  app.notFound((c) =>
    errorResponse(c, new HttpError(404, `Unknown route ${c.req.method} ${c.req.path}`, { code: 'unknown_url' })),
  )

  if (options.cors) {
    const origin = options.cors === true ? '*' : options.cors
    app.use('/v1/*', cors({ origin, exposeHeaders: [REQUEST_ID_HEADER] }))
  }
  app.use('/v1/*', async (c, next) => {
    if (closing) return errorResponse(c, new HttpError(503, 'The server is shutting down', { code: 'shutting_down' }))
    if (apiKey !== undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')
      if (!m || !sameSecret(m[1]!.trim(), apiKey)) {
        return errorResponse(
          c,
          new HttpError(401, 'Missing or incorrect API key: send Authorization: Bearer <key>', {
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          }),
        )
      }
    }
    await next()
  })
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: limit,
      onError: (c) =>
        errorResponse(
          c,
          new HttpError(413, `The request body is larger than ${limit} bytes`, { code: 'request_too_large' }),
        ),
    }),
  )

  app.get('/v1/models', async (c) => {
    const ids = served ? [...served] : await loadedModels(engine)
    return c.json({ object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: 'orchard' })) })
  })
  app.get('/v1/models/:id{.+}', async (c) => {
    const id = c.req.param('id')
    const ids = served ? [...served] : await loadedModels(engine)
    if (!ids.includes(id))
      throw new HttpError(404, `The model '${id}' does not exist or is not served here`, {
        param: 'model',
        code: 'model_not_found',
      })
    return c.json({ id, object: 'model', created, owned_by: 'orchard' })
  })

  app.post('/v1/chat/completions', async (c) => {
    const req = mapChatRequest(await json(c))
    const send = (signal: AbortSignal) => engine.client().chat(req.model, req.messages, { ...req.options, signal })
    return generate(c, req.model, req.names, send, async (chat) => {
      const id = newId('chatcmpl-')
      if (!req.stream) return c.json(chatCompletion(id, req.model, await chat, req.logprobs))
      return async (s) => {
        const w = new ChunkWriter(id, req.model, req.includeUsage, req.logprobs)
        for await (const d of chat) for (const chunk of w.delta(d)) await s.writeSSE({ data: JSON.stringify(chunk) })
        for (const chunk of w.finish(await chat.finalResult())) await s.writeSSE({ data: JSON.stringify(chunk) })
        await s.writeSSE({ data: '[DONE]' })
      }
    })
  })

  app.post('/v1/completions', async (c) => {
    const req = mapCompletionRequest(await json(c))
    const send = (signal: AbortSignal) =>
      engine.client().chatBatch(req.model, req.conversations, { ...req.options, signal })
    return generate(c, req.model, req.names, send, async (batch) => {
      const id = newId('cmpl-')
      const base = {
        id,
        object: 'text_completion' as const,
        created: now(),
        model: req.model,
        system_fingerprint: null,
      }
      if (!req.stream) {
        const results = await batch
        const body: TextCompletion = {
          ...base,
          choices: results.flatMap((r, p) =>
            r.choices.map((ch) => ({
              index: completionIndex(p, ch.index, req.n),
              text: ch.text,
              logprobs: req.logprobs.enabled ? completionLogprobs(ch.logprobs ?? [], req.logprobs.top) : null,
              finish_reason: finishReason(ch.finishReason, 0),
            })),
          ),
          usage: usage(sumUsage(results.map((r) => r.usage))),
        }
        return c.json(body)
      }
      return async (s) => {
        const chunk = (choices: TextCompletion['choices']): string =>
          JSON.stringify({ ...base, choices, ...(req.includeUsage ? { usage: null } : {}) })
        const offsets = new Map<number, number>()
        for await (const d of batch) {
          const index = completionIndex(d.promptIndex ?? 0, d.candidateIndex ?? 0, req.n)
          const lp =
            req.logprobs.enabled && d.logprobs?.length
              ? completionLogprobs(d.logprobs, req.logprobs.top, offsets.get(index) ?? 0)
              : null
          if (!d.text && !lp) continue
          offsets.set(index, (offsets.get(index) ?? 0) + d.text.length)
          await s.writeSSE({ data: chunk([{ index, text: d.text, logprobs: lp, finish_reason: null }]) })
        }
        const results = await batch.finalResult()
        for (const [p, r] of results.entries()) {
          for (const ch of r.choices) {
            await s.writeSSE({
              data: chunk([
                {
                  index: completionIndex(p, ch.index, req.n),
                  text: '',
                  logprobs: null,
                  finish_reason: finishReason(ch.finishReason, 0),
                },
              ]),
            })
          }
        }
        if (req.includeUsage)
          await s.writeSSE({
            data: JSON.stringify({ ...base, choices: [], usage: usage(sumUsage(results.map((r) => r.usage))) }),
          })
        await s.writeSSE({ data: '[DONE]' })
      }
    })
  })

  app.post('/v1/embeddings', async (c) => {
    const req = mapEmbeddingsRequest(await json(c))
    checkModel(req.model)
    const { controller, end } = begin(c)
    try {
      const call = engine.client().embed(req.model, req.input, { signal: controller.signal })
      c.header(REQUEST_ID_HEADER, String(await call.requestId()))
      const result = await call
      if (req.dimensions !== undefined && req.dimensions !== result.dimensions) {
        throw badRequest(
          'dimensions',
          `the model's embeddings have ${result.dimensions} dimensions; it cannot give ${req.dimensions}`,
        )
      }
      return c.json(embeddingList(req.model, result, req.encodingFormat))
    } catch (e) {
      throw toHttpError(e)
    } finally {
      end()
    }
  })

  app.post('/v1/responses', async (c) => {
    const req = mapResponsesRequest(await json(c))
    const send = (signal: AbortSignal) => engine.client().responses(req.model, { ...req.request, signal })
    return generate(c, req.model, new Map(), send, async (responses, signal) => {
      if (!req.stream) {
        const { outputText: _t, toolCalls: _c, parsed: _p, parseError: _e, ...object } = await responses
        void [_t, _c, _p, _e]
        return c.json<ResponseObject>(object)
      }
      return async (s) => {
        try {
          for await (const event of responses) await s.writeSSE({ event: event.type, data: JSON.stringify(event) })
        } catch (e) {
          // A failure was already sent as a `response.failed` event; a cancellation was not.
          if (signal.aborted) throw e
        }
      }
    })
  })

  modalRoutes(app, { engine, checkModel, begin, json, requestIdHeader: REQUEST_ID_HEADER })

  const fetch = async (request: Request): Promise<Response> => app.fetch(request)

  let closed: Promise<void> | undefined
  return {
    fetch,
    get inFlight() {
      return inFlight.size
    },
    listen({ host = '127.0.0.1', port = 8000 }: ListenOptions = {}): Promise<ServerAddress> {
      if (server) return Promise.reject(new InvalidRequestError('listen: this server is already listening'))
      if (closing) return Promise.reject(new InvalidRequestError('listen: this server was closed'))
      const s = createAdaptorServer({ fetch: app.fetch }) as Server
      server = s
      return new Promise<ServerAddress>((resolve, reject) => {
        s.once('error', reject)
        s.listen(port, host, () => {
          s.off('error', reject)
          const a = s.address() as AddressInfo
          const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address
          resolve({ host: a.address, port: a.port, url: `http://${shown}:${a.port}` })
        })
      })
    },
    close({ graceMs = 10_000 }: CloseOptions = {}): Promise<void> {
      closed ??= (async () => {
        closing = true
        const s = server
        const stopped = s ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve()
        s?.closeIdleConnections()
        let timer: NodeJS.Timeout | undefined
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))
        await Promise.race([Promise.all([...inFlight].map((f) => f.done)), grace])
        clearTimeout(timer)
        for (const f of inFlight) f.controller.abort(new Error('the server is shutting down'))
        await Promise.all([...inFlight].map((f) => f.done))
        // Let the last bytes (a cancelled stream's error event) reach their clients.
        s?.closeIdleConnections()
        const flushed = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(graceMs, 1_000))))
        await Promise.race([stopped, flushed])
        clearTimeout(timer)
        s?.closeAllConnections()
        await stopped
      })()
      return closed
    },
  }
}

/** The models the engine has loaded (its `list_models`), by every id they were loaded under. */
async function loadedModels(engine: Engine): Promise<string[]> {
  const reply = await engine.managementCommand({ type: 'list_models' })
  const data = (reply.data?.list_models ?? reply.data) as { models?: unknown } | undefined
  const models = (Array.isArray(data?.models) ? data.models : []) as Array<{
    requested_id?: unknown
    requested_ids?: unknown
    load_state?: unknown
  }>
  const ids: string[] = []
  for (const m of models) {
    if (m.load_state !== undefined && m.load_state !== 'ready' && m.load_state !== 'loaded') continue
    const names = Array.isArray(m.requested_ids) ? m.requested_ids : [m.requested_id]
    for (const n of names) if (typeof n === 'string' && !ids.includes(n)) ids.push(n)
  }
  return ids
}
