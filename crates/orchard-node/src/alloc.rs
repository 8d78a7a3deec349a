//! The addon's global allocator. Rendering a prompt allocates many small, short-lived values
//! (template values, strings, frames); mimalloc serves them with fewer instructions than glibc
//! malloc. Built with `no_thp`: with transparent huge pages, each purge and re-touch of its
//! memory made the kernel clear a 2 MiB page (about a tenth of the CPU of a render loop), and
//! with `local_dynamic_tls`, the TLS model a library loaded by `dlopen` needs.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
