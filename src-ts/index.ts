export { Client } from './client'
export type { EmbeddingPromise, EmbeddingUsage, EmbedOptions, EmbedResult } from './embed'
export type {
  DownloadProgress,
  EngineStartOptions,
  EngineStopOptions,
  InstallOptions,
  InstallResult,
  LoadModelOptions,
  ManagementCommand,
  ManagementReply,
  ModelLoadState,
  ModelStatus,
} from './engine'
export { Engine } from './engine'
export type { OrchardErrorCode, OrchardErrorOptions } from './errors'
export {
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
  ProtocolError,
  TemplateError,
  TimeoutError,
  TransportError,
} from './errors'
export type { ImageEditOptions, ImageGenerateOptions, ModalArtifact, SpeechOptions, TranscribeOptions } from './modal'
export { AudioClient, ImagesClient } from './modal'
export * as models from './models'
export type {
  Box,
  CaptionOptions,
  GroundingSpan,
  MoondreamOptions,
  MoondreamQueryResult,
  Point,
  QueryOptions,
  SpatialRef,
} from './moondream'
export { MOONDREAM_MODEL, MOONDREAM_TOKENS, Moondream } from './moondream'
export type { PrivacyFilterAnalysis, PrivacyFilterOptions } from './privacy-filter'
export { PRIVACY_FILTER_MAX_INPUT_BYTES, PRIVACY_FILTER_MODEL } from './privacy-filter'
export type { RenderedPrompt, RenderInput } from './render'
export { renderChat } from './render'
export type { Response, ResponseToolCall } from './responses'
export { ResponseStream } from './responses'
export type * from './responses/types'
export { ChatBatchStream, ChatStream, DeltaStream } from './stream'
export type { ImageInput } from './tasks/media'
export type { PrefillOptions, PrefillPromise, PrefillResult, TaskDelta } from './tasks/prefill'
export type { RequestPromise } from './tasks/request'
export { ModalStream } from './tasks/stream'
export type * from './types'
export * as wire from './wire'
