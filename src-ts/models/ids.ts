/** Hub model ids, the Hub cache's folder names, the Hub's settings, and which files a model needs. Internal. */

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { expandHome } from '../paths'

export function hubCacheDir(override?: string): string {
  if (override) return path.resolve(expandHome(override))
  if (process.env.HF_HUB_CACHE) return path.resolve(expandHome(process.env.HF_HUB_CACHE))
  if (process.env.HF_HOME) return path.join(path.resolve(expandHome(process.env.HF_HOME)), 'hub')
  const xdg = process.env.XDG_CACHE_HOME
  return path.join(xdg ? path.resolve(expandHome(xdg)) : path.join(os.homedir(), '.cache'), 'huggingface', 'hub')
}

export function hfToken(override?: string): string | undefined {
  if (override) return override
  const env = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN
  if (env) return env.trim()
  try {
    const home = process.env.HF_HOME
      ? expandHome(process.env.HF_HOME)
      : path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface')
    const t = statSync(path.join(home, 'token')).isFile() ? readFileSync(path.join(home, 'token'), 'utf8').trim() : ''
    return t || undefined
  } catch {
    return undefined
  }
}

export function endpointOf(override?: string): string {
  return (override ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '')
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/

/** True for an `org/name` id (and not an existing local path). */
export function isRepoId(id: string): boolean {
  return REPO_ID.test(id) && !id.includes('..') && !id.endsWith('.git')
}

export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`
}

/** The cache folder for `repoId`, matching an existing folder case-insensitively. */
export function findRepoFolder(cacheDir: string, repoId: string): string | null {
  const exact = path.join(cacheDir, repoFolderName(repoId))
  if (existsSync(exact)) return exact
  let names: string[]
  try {
    names = readdirSync(cacheDir)
  } catch {
    return null
  }
  const want = repoFolderName(repoId).toLowerCase()
  const hit = names.find((n) => n.toLowerCase() === want)
  return hit ? path.join(cacheDir, hit) : null
}

export function folderToRepoId(folder: string): string | null {
  const m = /^models--(.+?)--(.+)$/.exec(folder)
  return m ? `${m[1]}/${m[2]}` : null
}

function isLocalPathLike(id: string): boolean {
  return (
    path.isAbsolute(id) ||
    id.startsWith('./') ||
    id.startsWith('../') ||
    id.startsWith('~') ||
    id === '.' ||
    id === '..'
  )
}

/** An id that names a path on this machine rather than a Hub repository. */
export function isLocalId(id: string): boolean {
  return isLocalPathLike(id) || !isRepoId(id)
}

// Which files a model needs

const ALWAYS = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
  'spiece.model',
  'chat_template.jinja',
  'chat_template.json',
  'preprocessor_config.json',
  'processor_config.json',
  'model_index.json',
])

/**
 * The files of a repository a model needs: config, tokenizer, generation config, chat
 * template, and the safetensors weights with their index. Other weight formats (`*.bin`,
 * `*.pth`, `*.pt`) only when there are no safetensors; never onnx, gguf, or subfolders.
 */
export function selectModelFiles(files: string[]): string[] {
  const top = files.filter((f) => !f.includes('/'))
  const hasSafetensors = top.some((f) => f.endsWith('.safetensors'))
  return top.filter((f) => {
    if (
      ALWAYS.has(f) ||
      /^tokenizer.*\.(json|model|txt)$/.test(f) ||
      f.endsWith('.tiktoken') ||
      /^chat_template.*\.(jinja|json)$/.test(f)
    )
      return true
    if (f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')) return true
    if (!hasSafetensors && (/\.(bin|pth|pt)$/.test(f) || f.endsWith('.bin.index.json')))
      return !/^(training_args|optimizer|scheduler|rng_state)/.test(f)
    return false
  })
}
