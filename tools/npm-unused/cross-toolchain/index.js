throw new Error(
  '@napi-rs/cross-toolchain is replaced by a placeholder in orchard-ts (see tools/npm-unused/README.md): ' +
    'the project builds natively with cargo and never cross-compiles or builds WebAssembly.',
)
