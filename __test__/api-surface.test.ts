// The public entries' declarations (as `npm run build:ts` emits them, @internal stripped)
// expose no internals: no native-call helpers, no addon types, no internal constructors.
import path from 'node:path'

import ts from 'typescript'
import { describe, expect, it } from 'vitest'

import { repoRoot } from './helpers'

const ENTRIES = ['index', 'testing', 'server/index', 'ai/index']
const INTERNAL =
  /\b(native|nativeSync|makeError|fromNative|addon|requestJson|NativeEngine|NativeChat|NativeEmbedding|NativeBinding|StreamOptions)\b/

/** The build's declaration files, emitted in memory. */
function declarations(): Map<string, string> {
  const config = ts.getParsedCommandLineOfConfigFile(
    path.join(repoRoot, 'tsconfig.build.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'))
      },
    },
  )!
  const options: ts.CompilerOptions = {
    ...config.options,
    emitDeclarationOnly: true,
    sourceMap: false,
    inlineSources: false,
  }
  const out = new Map<string, string>()
  ts.createProgram(config.fileNames, options).emit(undefined, (name, text) => {
    if (name.endsWith('.d.ts')) out.set(path.resolve(name), text)
  })
  return out
}

/** A program over the entries' emitted declarations (`skipLibCheck`: whether to type-check them). */
function declarationProgram(files: Map<string, string>, skipLibCheck: boolean): ts.Program {
  const options: ts.CompilerOptions = {
    strict: true,
    skipLibCheck,
    types: ['node'],
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  }
  const host = ts.createCompilerHost(options)
  const { fileExists, readFile } = host
  host.fileExists = (f) => files.has(path.resolve(f)) || fileExists(f)
  host.readFile = (f) => files.get(path.resolve(f)) ?? readFile(f)
  return ts.createProgram(
    ENTRIES.map((e) => path.join(repoRoot, 'dist', `${e}.d.ts`)),
    options,
    host,
  )
}

/** Every name a consumer reaches from `entry`, with the text of what it declares. */
function publicSurface(files: Map<string, string>): Map<string, string> {
  const program = declarationProgram(files, true)
  const roots = program.getRootFileNames()
  const checker = program.getTypeChecker()
  const surface = new Map<string, string>()
  const visit = (moduleSymbol: ts.Symbol, prefix: string): void => {
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
      const name = `${prefix}${exported.name}`
      const decls = symbol.declarations ?? []
      surface.set(name, decls.map((d) => d.getText()).join('\n'))
      if (symbol.flags & ts.SymbolFlags.ValueModule && decls.some((d) => ts.isSourceFile(d))) visit(symbol, `${name}.`)
    }
  }
  for (const [i, root] of roots.entries()) {
    const file = program.getSourceFile(root)
    expect(file, root).toBeDefined()
    visit(checker.getSymbolAtLocation(file!)!, `${ENTRIES[i]}:`)
  }
  return surface
}

describe('public declarations', () => {
  it('expose no internal helper, addon type or internal constructor', () => {
    const surface = publicSurface(declarations())
    expect(surface.has('index:Client')).toBe(true)
    expect(surface.has('index:wire.encodeRequest')).toBe(true)
    expect(surface.has('index:models.pull')).toBe(true)
    const leaks = [...surface]
      .filter(([name, text]) => INTERNAL.test(name.split(/[:.]/).pop()!) || INTERNAL.test(text))
      .map(([name, text]) => `${name}: ${INTERNAL.exec(text)?.[0] ?? name}`)
    expect(leaks).toEqual([])
  }, 120_000)

  it('type-check on their own (stripInternal leaves no dangling import or export)', () => {
    const files = declarations()
    const program = declarationProgram(files, false)
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file !== undefined && files.has(path.resolve(d.file.fileName)))
      .map(
        (d) => `${path.relative(repoRoot, d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`,
      )
    expect(problems).toEqual([])
  }, 120_000)
})
