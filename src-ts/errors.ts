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

type ErrorClass = new (message: string, options?: OrchardErrorOptions) => OrchardError

/**
 * The base of an error class that fixes its code (its instances are constructed with a
 * message and options); under `parent`, a more general kind of error, when given.
 */
function coded(code: OrchardErrorCode): ErrorClass
function coded<P extends ErrorClass>(code: OrchardErrorCode, parent: P): P
function coded(code: OrchardErrorCode, parent?: ErrorClass): ErrorClass {
  if (parent) {
    return class extends parent {
      override readonly code: OrchardErrorCode = code
    }
  }
  return class extends OrchardError {
    constructor(message: string, options?: OrchardErrorOptions) {
      super(code, message, options)
    }
  }
}

/** A frame or message that does not follow the PIE wire protocol. */
export class ProtocolError extends coded('PROTOCOL') {}
/** A request built wrongly: unknown option, wrong type, value out of range. */
export class InvalidRequestError extends coded('INVALID_REQUEST') {}
/** The NNG transport failed. */
export class TransportError extends coded('TRANSPORT') {}
/** No engine binary was found; the message lists the paths tried and the fix. */
export class EngineNotFoundError extends coded('ENGINE_NOT_FOUND') {}
/** The engine was launched but never became ready. */
export class EngineStartupError extends coded('ENGINE_STARTUP') {}
/** The engine died or the connection to it closed. */
export class EngineDiedError extends coded('ENGINE_DIED') {}
/** The engine answered with an error (carries the engine's own message). */
export class EngineError extends coded('ENGINE') {}
/** The model is not loaded (or failed to load). */
export class ModelNotLoadedError extends coded('MODEL_NOT_LOADED') {}
/** A deadline passed. */
export class TimeoutError extends coded('TIMEOUT') {}
/** A filesystem or process error. */
export class IoError extends coded('IO') {}
/** A bug in orchard itself. Please report it. */
export class InternalError extends coded('INTERNAL') {}
/** The native addon could not be loaded on this platform. */
export class NativeLoadError extends coded('NATIVE_LOAD') {}
/** A download (engine archive, model file, manifest) failed: HTTP error, cut connection, bad archive. */
export class DownloadError extends coded('DOWNLOAD') {}
/** The server refused the credentials (or their absence): set `HF_TOKEN` for gated or private models. */
export class AuthenticationError extends coded('AUTH') {}
/**
 * Some of a request's deltas never arrived (the engine's counts say more was generated than
 * was received, or its final delta was lost); the request fails rather than completing short.
 */
export class DeltasLostError extends coded('DELTAS_LOST', ProtocolError) {}
/**
 * The prompt could not be rendered: an unknown model family, a bad message, content part or
 * tool (named by its index and field), or the template itself (named by family and line). A
 * kind of {@link InvalidRequestError}: the request cannot be sent as it is.
 */
export class TemplateError extends coded('TEMPLATE', InvalidRequestError) {}
/** No such model: not on the Hub, not in the cache when offline, or a local path that does not exist (a {@link ModelNotLoadedError}). */
export class ModelNotFoundError extends coded('MODEL_NOT_FOUND', ModelNotLoadedError) {}
/** A downloaded file does not match its published SHA-256 (or git blob id); it was not installed. */
export class ChecksumError extends coded('CHECKSUM', DownloadError) {}
/** The operation was aborted (`signal`, `.cancel()` or leaving a `for await` early). */
export class AbortError extends OrchardError {
  constructor(message = 'The operation was aborted', options?: OrchardErrorOptions) {
    super('ABORTED', message, options)
    this.name = 'AbortError'
  }
}

const classes: Record<OrchardErrorCode, ErrorClass> = {
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
const NAPI_ARGUMENT_CODES = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
])

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
    if (typeof code === 'string' && NAPI_ARGUMENT_CODES.has(code))
      return new InvalidRequestError(err.message, { cause: err })
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
