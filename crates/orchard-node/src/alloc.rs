//! The addon's global allocator. Rendering a prompt allocates many small, short-lived values
//! (template values, strings, frames); mimalloc serves them markedly faster than glibc malloc
//! (see BENCHMARKS.md, `render_us_<family>`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
