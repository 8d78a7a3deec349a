/** OpenAI error objects: every failure the server reports, with its HTTP status. */

import { OrchardError } from '../errors'

/** The body of an error response, as OpenAI's API shapes it. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

export type ErrorStatus = 400 | 401 | 404 | 405 | 413 | 499 | 500 | 503 | 504

/** A failure with its HTTP status and OpenAI error fields. */
export class HttpError extends Error {
  readonly status: ErrorStatus
  readonly type: string
  readonly param: string | null
  readonly code: string | null
  constructor(
    status: ErrorStatus,
    message: string,
    options: { type?: string; param?: string | null; code?: string | null } = {},
  ) {
    super(message)
    this.name = 'HttpError'
    this.status = status
    this.type = options.type ?? defaultType(status)
    this.param = options.param ?? null
    this.code = options.code ?? null
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

function defaultType(status: ErrorStatus): string {
  switch (status) {
    case 400:
    case 404:
    case 405:
    case 413:
      return 'invalid_request_error'
    case 401:
      return 'authentication_error'
    case 503:
      return 'service_unavailable'
    case 504:
      return 'timeout'
    default:
      return 'server_error'
  }
}

/** A 400 naming the request field at fault. */
export function badRequest(param: string, message: string): HttpError {
  return new HttpError(400, `${param}: ${message}`, { param, code: 'invalid_request' })
}

/**
 * orchard's option names (as the core's messages name them) → the OpenAI request field that
 * set them. Filled by the request mapping, which owns the correspondence.
 */
export type ParamNames = ReadonlyMap<string, string>

/** Rename a leading `options.<name>` in an orchard message to the OpenAI field it came from. */
function renameParam(message: string, names: ParamNames): { message: string; param: string | null } {
  const m = /^(options\.)?([A-Za-z_][\w]*)((?:\[\d+\]|\.[A-Za-z_]\w*)*)\s*:/.exec(message)
  if (!m) return { message, param: null }
  const head = m[2]!
  const field = m[1] ? (names.get(head) ?? head) : head
  const param = `${field}${m[3] ?? ''}`
  return { message: `${param}${message.slice(m[0].length - 1)}`, param }
}

/** The HTTP error for anything a handler threw. */
export function toHttpError(e: unknown, names: ParamNames = new Map()): HttpError {
  if (e instanceof HttpError) return e
  if (e instanceof OrchardError) {
    switch (e.code) {
      case 'INVALID_REQUEST':
      case 'TEMPLATE': {
        const { message, param } = renameParam(e.message, names)
        return new HttpError(400, message, { param, code: e.code.toLowerCase() })
      }
      case 'MODEL_NOT_LOADED':
      case 'MODEL_NOT_FOUND':
        return new HttpError(404, e.message, { param: 'model', code: 'model_not_found' })
      case 'ENGINE_DIED':
      case 'ENGINE_NOT_FOUND':
      case 'ENGINE_STARTUP':
      case 'TRANSPORT':
        return new HttpError(503, e.message, { code: e.code.toLowerCase() })
      case 'TIMEOUT':
        return new HttpError(504, e.message, { code: 'timeout' })
      case 'ABORTED':
        return new HttpError(499, e.message, { type: 'request_cancelled', code: 'aborted' })
      default:
        return new HttpError(500, e.message, { code: e.code.toLowerCase() })
    }
  }
  const message = e instanceof Error ? e.message : String(e)
  return new HttpError(500, message, { code: 'internal' })
}
