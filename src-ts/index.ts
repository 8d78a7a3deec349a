export { Engine } from './engine'
export type { EngineStartOptions, EngineStopOptions, LoadModelOptions } from './engine'
export { Client } from './client'
export type { EmbedOptions, EmbedResult, EmbeddingPromise, EmbeddingUsage } from './embed'
export type { PrefillOptions, PrefillPromise, PrefillResult, TaskDelta } from './tasks/prefill'
export type { RequestPromise } from './tasks/request'
export { AudioClient, ImagesClient } from './modal'
export type { ImageEditOptions, ImageGenerateOptions, ModalArtifact, SpeechOptions, TranscribeOptions } from './modal'
export { MOONDREAM_MODEL, MOONDREAM_TOKENS, Moondream } from './moondream'
export type { Box, CaptionOptions, GroundingSpan, MoondreamOptions, MoondreamQueryResult, Point, QueryOptions, SpatialRef } from './moondream'
export type { ImageInput } from './tasks/media'
export { PRIVACY_FILTER_MAX_INPUT_BYTES, PRIVACY_FILTER_MODEL } from './privacy-filter'
export type { PrivacyFilterAnalysis, PrivacyFilterOptions } from './privacy-filter'
export { ChatBatchStream, ChatStream, DeltaStream } from './stream'
export { ResponseStream } from './responses'
export type { Response } from './responses'
export type * from './responses/types'
export { renderChat } from './render'
export type { RenderInput, RenderedPrompt } from './render'
export * as wire from './wire'
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
export type { OrchardErrorCode, OrchardErrorOptions } from './errors'
export type * from './types'
export type { DownloadProgress, InstallOptions, InstallResult, ManagementCommand, ManagementReply, ModelLoadState, ModelStatus } from './engine'
export * as models from './models'
