//! The instrument check: whether the counters see every allocation of this process, in
//! a soak's child (the hooks linked into the executable) and in a watched program (the
//! hooks in the preloaded library) alike.

#[cfg(feature = "hooks")]
use std::ffi::CString;
use std::ffi::{c_void, CStr};

/// Why the heap counters cannot be trusted in this process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeapError {
    /// Built without the `hooks` feature.
    #[error("heap instrumentation is off: avsoak was built without its `hooks` feature")]
    NotBuiltIn,
    /// The hook crate is linked but its constructor never ran.
    #[error(
        "heap instrumentation is not active: the avsoak-hooks constructor did not run (the \
         executable must reach avsoak's heap check, as avsoak::main! and avsoak::testing do; \
         a static executable or one linked without libc's dynamic symbols cannot be hooked)"
    )]
    NotConstructed,
    /// The dynamic linker resolves an allocation function to another object.
    #[error(
        "the program brings its own allocator: `{symbol}` resolves to {owner} instead of \
         avsoak's hook (a sanitizer, jemalloc/tcmalloc/mimalloc in unprefixed mode, a \
         preloaded allocator or the program's own malloc), so avsoak cannot see its \
         allocations and refuses to judge"
    )]
    ForeignAllocator {
        /// The allocation function.
        symbol: String,
        /// The object it resolves to.
        owner: String,
    },
    /// An allocator library of its own is loaded in the process.
    #[error(
        "the program brings its own allocator ({library}): avsoak counts glibc's malloc \
         and refuses to judge heap growth it cannot see"
    )]
    AllocatorLoaded {
        /// The loaded object.
        library: String,
    },
    /// `LD_PRELOAD` brings in a library that defines its own allocator.
    #[error(
        "LD_PRELOAD library {library} defines `malloc`; avsoak refuses to judge heap growth \
         next to another allocator (unset LD_PRELOAD to run the soak)"
    )]
    Preloaded {
        /// The preloaded object.
        library: String,
    },
    /// A test allocation through the resolved `malloc` was not counted.
    #[error(
        "a test allocation through `malloc` was not counted: the hooks are bypassed \
         (valgrind and similar tools replace malloc themselves; run the soak without them)"
    )]
    NotCounting,
}

/// Verifies that the counters see every allocation of the process: the hooks are built
/// in, their constructor ran, every allocation symbol resolves to them, no preloaded
/// library brings its own `malloc`, and a test allocation through the resolved `malloc`
/// is counted.
pub fn check() -> Result<(), HeapError> {
    #[cfg(not(feature = "hooks"))]
    return Err(HeapError::NotBuiltIn);
    #[cfg(feature = "hooks")]
    {
        if !avsoak_hooks::linked() {
            return Err(HeapError::NotConstructed);
        }
        if let Some(library) = allocator_loaded() {
            return Err(HeapError::AllocatorLoaded { library });
        }
        // The object that holds the hooks, found through a function of this crate that
        // nothing can interpose (in a shared object, a hook's own address is bound
        // through the GOT: the program's `malloc` when the program defines one).
        let ours = object_of(resolve_default as *const () as usize);
        for (symbol, _) in avsoak_hooks::hook_addresses() {
            let resolved = resolve_default(symbol);
            let owner = object_of(resolved);
            if owner.is_none() || owner != ours {
                return Err(HeapError::ForeignAllocator {
                    symbol: symbol.to_owned(),
                    owner: owner.map_or_else(
                        || "an unknown object".into(),
                        |o| {
                            if o.is_empty() {
                                "the program itself".into()
                            } else {
                                o
                            }
                        },
                    ),
                });
            }
        }
        check_preload()?;
        let malloc_addr = resolve_default("malloc");
        // SAFETY: `malloc_addr` is the address the dynamic linker gives for `malloc`,
        // which we just checked is in the hooks' own object, so it is our hook, whose
        // signature is malloc(3)'s.
        let malloc_fn: unsafe extern "C" fn(usize) -> *mut c_void =
            unsafe { std::mem::transmute::<usize, _>(malloc_addr) };
        let before = avsoak_hooks::counters().allocs;
        // SAFETY: malloc(3) with a positive size; the block is freed right below.
        let block = unsafe { malloc_fn(4096) };
        let after = avsoak_hooks::counters().allocs;
        // SAFETY: `block` came from malloc above and is freed once.
        unsafe { libc::free(block) };
        if block.is_null() || after == before {
            return Err(HeapError::NotCounting);
        }
        Ok(())
    }
}

#[cfg(feature = "hooks")]
fn resolve_default(symbol: &str) -> usize {
    let name = CString::new(symbol).expect("symbol names have no NUL");
    // SAFETY: RTLD_DEFAULT lookup of a NUL-terminated name; the result is only compared.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// The file name of the object that holds `addr`, through `dladdr` (empty for the
/// program itself when the loader names none).
pub(crate) fn object_of(addr: usize) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only writes `info`; any address is allowed.
    let found = unsafe { libc::dladdr(addr as *const c_void, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so `info` is filled in.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Some(
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// A loaded object that is an allocator of its own, by file name.
#[cfg(feature = "hooks")]
fn allocator_loaded() -> Option<String> {
    const ALLOCATORS: [&str; 9] = [
        "libjemalloc",
        "libtcmalloc",
        "libmimalloc",
        "libasan",
        "libtsan",
        "libmsan",
        "liblsan",
        "libhwasan",
        "libubsan",
    ];
    let mut found: Option<String> = None;
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for this call, and `data` is the
        // `&mut Option<String>` given below, alive for the whole iteration.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Option<String>)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        let file = name.rsplit('/').next().unwrap_or(&name);
        if ALLOCATORS.iter().any(|a| file.starts_with(a)) {
            *found = Some(name.into_owned());
            return 1;
        }
        0
    }
    // SAFETY: the callback only reads the loader's entries and writes `found`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Option<String>).cast()) };
    found
}

#[cfg(feature = "hooks")]
fn check_preload() -> Result<(), HeapError> {
    let Ok(preload) = std::env::var("LD_PRELOAD") else {
        return Ok(());
    };
    let executable = object_of(resolve_default as *const () as usize);
    for library in preload.split([':', ' ']).filter(|s| !s.is_empty()) {
        let Ok(name) = CString::new(library) else {
            continue;
        };
        // SAFETY: RTLD_NOLOAD only returns a handle to an object already loaded; it
        // loads nothing. The handle is closed below.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            continue;
        }
        // Both the default version and the base one: glibc's own debugging allocator
        // exports `malloc@GLIBC_2.2.5` only, which a plain dlsym passes over.
        // SAFETY: `handle` is valid and the names are NUL-terminated.
        let found = unsafe {
            [
                libc::dlsym(handle, c"malloc".as_ptr()) as usize,
                libc::dlvsym(handle, c"malloc".as_ptr(), c"GLIBC_2.2.5".as_ptr()) as usize,
            ]
        };
        // SAFETY: balances the dlopen above.
        unsafe { libc::dlclose(handle) };
        for addr in found.into_iter().filter(|&a| a != 0) {
            let owner = object_of(addr);
            let is_libc = owner.as_deref().is_some_and(|o| {
                o.rsplit('/')
                    .next()
                    .is_some_and(|f| f.starts_with("libc.so"))
            });
            if !is_libc && owner != executable {
                return Err(HeapError::Preloaded {
                    library: library.to_owned(),
                });
            }
        }
    }
    Ok(())
}
