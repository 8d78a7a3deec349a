/**
 * Typed errors. Every error orchard throws is an {@link OrchardError} with a stable `code`;
 * branch with `instanceof` on the subclasses or compare `err.code`.
 */

export type OrchardErrorCode =
  | 'PROTOCOL'
  | 'DELTAS_LOST'
  | 'INVALID_REQUEST'
  | 'TEMPLATE'
  | 'TRANSPORT'
  | 'ENGINE_NOT_FOUND'
  | 'ENGINE_STARTUP'
  | 'ENGINE_DIED'
  | 'ENGINE'
  | 'MODEL_NOT_LOADED'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'IO'
  | 'INTERNAL'
  | 'NATIVE_LOAD'
  | 'DOWNLOAD'
  | 'CHECKSUM'
  | 'AUTH'
  | 'MODEL_NOT_FOUND'

/** What every error constructor takes besides its message. */
export interface OrchardErrorOptions {
  cause?: unknown
}

export class OrchardError extends Error {
  readonly code: OrchardErrorCode
  constructor(code: OrchardErrorCode, message: string, options?: OrchardErrorOptions) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A frame or message that does not follow the PIE wire protocol. */
export class ProtocolError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('PROTOCOL', message, options)
  }
}
/**
 * Some of a request's deltas never arrived (the engine's counts say more was generated than
 * was received, or its final delta was lost); the request fails rather than completing short.
 */
export class DeltasLostError extends ProtocolError {
  override readonly code: OrchardErrorCode = 'DELTAS_LOST'
}
/** A request built wrongly: unknown option, wrong type, value out of range. */
export class InvalidRequestError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('INVALID_REQUEST', message, options)
  }
}
/**
 * The prompt could not be rendered: an unknown model family, a bad message, content part or
 * tool (named by its index and field), or the template itself (named by family and line). A
 * kind of {@link InvalidRequestError}: the request cannot be sent as it is.
 */
export class TemplateError extends InvalidRequestError {
  override readonly code: OrchardErrorCode = 'TEMPLATE'
}
/** The NNG transport failed. */
export class TransportError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('TRANSPORT', message, options)
  }
}
/** No engine binary was found; the message lists the paths tried and the fix. */
export class EngineNotFoundError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('ENGINE_NOT_FOUND', message, options)
  }
}
/** The engine was launched but never became ready. */
export class EngineStartupError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('ENGINE_STARTUP', message, options)
  }
}
/** The engine died or the connection to it closed. */
export class EngineDiedError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('ENGINE_DIED', message, options)
  }
}
/** The engine answered with an error (carries the engine's own message). */
export class EngineError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('ENGINE', message, options)
  }
}
/** The model is not loaded (or failed to load). */
export class ModelNotLoadedError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('MODEL_NOT_LOADED', message, options)
  }
}
/** No such model: not on the Hub, not in the cache when offline, or a local path that does not exist (a {@link ModelNotLoadedError}). */
export class ModelNotFoundError extends ModelNotLoadedError {
  override readonly code: OrchardErrorCode = 'MODEL_NOT_FOUND'
}
/** A deadline passed. */
export class TimeoutError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('TIMEOUT', message, options)
  }
}
/** The operation was aborted (`signal`, `.cancel()` or leaving a `for await` early). */
export class AbortError extends OrchardError {
  constructor(message = 'The operation was aborted', options?: OrchardErrorOptions) {
    super('ABORTED', message, options)
    this.name = 'AbortError'
  }
}
/** A filesystem or process error. */
export class IoError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('IO', message, options)
  }
}
/** A bug in orchard itself. Please report it. */
export class InternalError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('INTERNAL', message, options)
  }
}
/** The native addon could not be loaded on this platform. */
export class NativeLoadError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('NATIVE_LOAD', message, options)
  }
}
/** A download (engine archive, model file, manifest) failed: HTTP error, cut connection, bad archive. */
export class DownloadError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('DOWNLOAD', message, options)
  }
}
/** A downloaded file does not match its published SHA-256 (or git blob id); it was not installed. */
export class ChecksumError extends DownloadError {
  override readonly code: OrchardErrorCode = 'CHECKSUM'
}
/** The server refused the credentials (or their absence): set `HF_TOKEN` for gated or private models. */
export class AuthenticationError extends OrchardError {
  constructor(message: string, options?: OrchardErrorOptions) {
    super('AUTH', message, options)
  }
}

const classes: Record<OrchardErrorCode, new (message: string, options?: OrchardErrorOptions) => OrchardError> = {
  PROTOCOL: ProtocolError,
  DELTAS_LOST: DeltasLostError,
  INVALID_REQUEST: InvalidRequestError,
  TEMPLATE: TemplateError,
  TRANSPORT: TransportError,
  ENGINE_NOT_FOUND: EngineNotFoundError,
  ENGINE_STARTUP: EngineStartupError,
  ENGINE_DIED: EngineDiedError,
  ENGINE: EngineError,
  MODEL_NOT_LOADED: ModelNotLoadedError,
  TIMEOUT: TimeoutError,
  ABORTED: AbortError,
  IO: IoError,
  INTERNAL: InternalError,
  NATIVE_LOAD: NativeLoadError,
  DOWNLOAD: DownloadError,
  CHECKSUM: ChecksumError,
  AUTH: AuthenticationError,
  MODEL_NOT_FOUND: ModelNotFoundError,
}

/**
 * The error class that owns `code`, constructed (an unknown code is an {@link InternalError}).
 * @internal
 */
export function makeError(code: string, message: string, cause?: unknown): OrchardError {
  const Cls = Object.hasOwn(classes, code) ? classes[code as OrchardErrorCode] : InternalError
  return new Cls(message, cause === undefined ? undefined : { cause })
}

const NATIVE_PREFIX = /^\[ORCHARD:([A-Z_]+)\] ([\s\S]*)$/

/** napi-rs's own codes for an argument of the wrong type. */
const NAPI_ARGUMENT_CODES = new Set(['InvalidArg', 'ObjectExpected', 'StringExpected', 'NameExpected', 'FunctionExpected', 'NumberExpected', 'BooleanExpected', 'ArrayExpected', 'BigintExpected'])

/**
 * Turn an error thrown by the native addon into the matching typed error: the core's coded
 * errors by their code, napi-rs's argument errors as {@link InvalidRequestError}, anything
 * else (e.g. a string over V8's limit) as {@link InternalError}. Never a plain `Error`.
 * @internal
 */
export function fromNative(err: unknown): unknown {
  if (err instanceof OrchardError) return err
  if (err instanceof Error) {
    const m = NATIVE_PREFIX.exec(err.message)
    if (m) return makeError(m[1] ?? '', m[2] ?? '', err)
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && NAPI_ARGUMENT_CODES.has(code)) return new InvalidRequestError(err.message, { cause: err })
    return new InternalError(`the native addon failed: ${err.message}`, { cause: err })
  }
  return err
}

/** Await a native call, rethrowing its error typed. @internal */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    throw fromNative(e)
  }
}

/** Run a synchronous native call, rethrowing its error typed. @internal */
export function nativeSync<T>(call: () => T): T {
  try {
    return call()
  } catch (e) {
    throw fromNative(e)
  }
}
