// Each error class owns its code; native codes map to the class that owns them.
import { describe, expect, it } from 'vitest'

import {
  AbortError,
  AuthenticationError,
  ChecksumError,
  DeltasLostError,
  DownloadError,
  EngineDiedError,
  EngineError,
  EngineNotFoundError,
  EngineStartupError,
  InternalError,
  InvalidRequestError,
  IoError,
  ModelNotFoundError,
  ModelNotLoadedError,
  NativeLoadError,
  OrchardError,
  type OrchardErrorCode,
  ProtocolError,
  TemplateError,
  TimeoutError,
  TransportError,
} from '../src-ts'
import { fromNative, makeError } from '../src-ts/errors'

type ErrorClass = new (message: string, options?: { cause?: unknown }) => OrchardError

/** Every code, with its class and the classes it must also be an instance of. */
const OWNERS: Record<OrchardErrorCode, [ErrorClass, ...ErrorClass[]]> = {
  PROTOCOL: [ProtocolError],
  DELTAS_LOST: [DeltasLostError, ProtocolError],
  INVALID_REQUEST: [InvalidRequestError],
  TEMPLATE: [TemplateError, InvalidRequestError],
  TRANSPORT: [TransportError],
  ENGINE_NOT_FOUND: [EngineNotFoundError],
  ENGINE_STARTUP: [EngineStartupError],
  ENGINE_DIED: [EngineDiedError],
  ENGINE: [EngineError],
  MODEL_NOT_LOADED: [ModelNotLoadedError],
  TIMEOUT: [TimeoutError],
  ABORTED: [AbortError],
  IO: [IoError],
  INTERNAL: [InternalError],
  NATIVE_LOAD: [NativeLoadError],
  DOWNLOAD: [DownloadError],
  CHECKSUM: [ChecksumError, DownloadError],
  AUTH: [AuthenticationError],
  MODEL_NOT_FOUND: [ModelNotFoundError, ModelNotLoadedError],
}

describe('error classes', () => {
  for (const [code, [Cls, ...parents]] of Object.entries(OWNERS) as Array<[OrchardErrorCode, [ErrorClass, ...ErrorClass[]]]>) {
    it(`${code}: ${Cls.name} fixes its code, and the native code maps to it`, () => {
      const cause = new Error('underneath')
      const made = new Cls('what happened', { cause })
      expect(made.code).toBe(code)
      expect(made.message).toBe('what happened')
      expect(made.cause).toBe(cause)
      expect(made.name).toBe(Cls.name)

      const mapped = fromNative(new Error(`[ORCHARD:${code}] from the core`))
      expect(mapped).toBeInstanceOf(Cls)
      for (const parent of parents) expect(mapped).toBeInstanceOf(parent)
      expect(mapped).toBeInstanceOf(OrchardError)
      expect((mapped as OrchardError).code).toBe(code)
      expect((mapped as OrchardError).message).toBe('from the core')
    })
  }

  it('an unknown native code is an InternalError with code INTERNAL', () => {
    const e = makeError('NOT_A_CODE', 'odd')
    expect(e).toBeInstanceOf(InternalError)
    expect(e.code).toBe('INTERNAL')
  })

  it("napi-rs's argument errors are InvalidRequestError; other native errors InternalError", () => {
    const arg = Object.assign(new Error('Failed to convert JavaScript value'), { code: 'StringExpected' })
    expect(fromNative(arg)).toBeInstanceOf(InvalidRequestError)
    expect(fromNative(new Error('Cannot create a string longer than 0x1fffffe8 characters'))).toBeInstanceOf(InternalError)
  })
})
