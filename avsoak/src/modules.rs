//! Naming a process's addresses from outside it.
//!
//! A watched program must not spend its own time turning sampled stacks into names: on a
//! one-second run, symbolizing its heap profile at exit (libc's compressed debug info,
//! the codec libraries' symbol tables) took longer than the sampling itself. So the agent
//! sends the raw addresses with the map of what was loaded where ([`loaded_modules`]),
//! and the watcher names them once the program has exited ([`ModuleResolver`]), from the
//! same files on disk.
//!
//! An address resolves through the object whose loaded segment holds it: its DWARF
//! (from the file itself or from its `/usr/lib/debug/.build-id/` file), else its symbol
//! table, else `?? [file]`. Rust and C++ names are demangled.

use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One object loaded into a process: its file and where its segments were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// The file, as the loader opened it.
    pub path: String,
    /// What the loader added to the file's addresses (`dlpi_addr`).
    pub bias: u64,
    /// Its loaded segments in the process, `[start, end)` each.
    pub ranges: Vec<(u64, u64)>,
}

/// Every object loaded into this process now, the program itself first.
pub fn loaded_modules() -> Vec<Module> {
    let mut modules: Vec<Module> = Vec::new();
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for this call, and `data` is the
        // `&mut Vec<Module>` given below, alive for the whole iteration.
        let (info, modules) = unsafe { (&*info, &mut *(data as *mut Vec<Module>)) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader's program headers: `dlpi_phnum` entries at `dlpi_phdr`,
            // mapped for as long as the object is loaded (all of this call).
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let ranges = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .map(|h| {
                let start = info.dlpi_addr.wrapping_add(h.p_vaddr);
                (start, start.wrapping_add(h.p_memsz))
            })
            .collect();
        modules.push(Module {
            path: name,
            bias: info.dlpi_addr,
            ranges,
        });
        0
    }
    // SAFETY: the callback only reads the loader's entries and pushes to `modules`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut modules as *mut Vec<Module>).cast()) };
    // The loader names the program itself "".
    if let Some(first) = modules.first_mut().filter(|m| m.path.is_empty()) {
        if let Ok(exe) = std::env::current_exe() {
            first.path = exe.to_string_lossy().into_owned();
        }
    }
    modules
}

/// Names addresses of another process from its [`Module`] map, opening each object's
/// files once, when an address first needs it.
pub struct ModuleResolver {
    modules: Vec<Module>,
    loaders: HashMap<usize, Option<addr2line::Loader>>,
}

impl std::fmt::Debug for ModuleResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleResolver")
            .field("modules", &self.modules.len())
            .field("opened", &self.loaders.len())
            .finish()
    }
}

impl ModuleResolver {
    /// A resolver for the process `modules` describes; nothing is opened yet.
    pub fn new(modules: Vec<Module>) -> Self {
        ModuleResolver {
            modules,
            loaders: HashMap::new(),
        }
    }

    /// The names at `address` (a call, not a return address): several when calls were
    /// inlined there, innermost first; `?? [file]` when nothing covers it.
    pub fn names(&mut self, address: u64) -> Vec<String> {
        let Some(at) = self
            .modules
            .iter()
            .position(|m| m.ranges.iter().any(|&(s, e)| (s..e).contains(&address)))
        else {
            return vec!["?? [?]".to_owned()];
        };
        let module = &self.modules[at];
        let probe = address.wrapping_sub(module.bias);
        let file = module.path.rsplit('/').next().unwrap_or(&module.path);
        let unknown = format!("?? [{file}]");
        let path = PathBuf::from(&module.path);
        let Some(loader) = self
            .loaders
            .entry(at)
            .or_insert_with(|| open(&path))
            .as_ref()
        else {
            return vec![unknown];
        };
        let mut names = Vec::new();
        if let Ok(mut frames) = loader.find_frames(probe) {
            while let Ok(Some(frame)) = frames.next() {
                if let Some(name) = frame.function.as_ref().and_then(|f| f.demangle().ok()) {
                    names.push(name.into_owned());
                }
            }
        }
        if names.is_empty() {
            if let Some(symbol) = loader.find_symbol(probe) {
                names.push(addr2line::demangle_auto(symbol.into(), None).into_owned());
            }
        }
        if names.is_empty() {
            names.push(unknown);
        }
        names
    }
}

/// An object's symbols: its separate debug file when one is installed by build id
/// (Debian's `-dbg` packages), else the file itself.
fn open(path: &Path) -> Option<addr2line::Loader> {
    if let Some(debug) = build_id(path).map(|id| debug_file(&id)) {
        if let Ok(loader) = addr2line::Loader::new(&debug) {
            return Some(loader);
        }
    }
    addr2line::Loader::new(path).ok()
}

/// Where Debian installs the debug file of build id `id`.
fn debug_file(id: &[u8]) -> PathBuf {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &hex[..2.min(hex.len())],
        &hex[2.min(hex.len())..]
    ))
}

/// The GNU build id of a 64-bit little-endian ELF file, from its program headers' notes
/// (read from the file's start, not the whole file).
fn build_id(path: &Path) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..6] != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
    };
    let u64_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    let phoff = u64_at(&header, 32)?;
    let phentsize = u16_at(&header, 54)?;
    let phnum = u16_at(&header, 56)?;
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    let mut headers = vec![0u8; (phentsize * phnum) as usize];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut headers).ok()?;
    for h in headers.chunks_exact(phentsize as usize) {
        if u32_at(h, 0)? != libc::PT_NOTE as u64 {
            continue;
        }
        let (offset, size) = (u64_at(h, 8)?, u64_at(h, 32)?);
        if size > 1 << 16 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut notes).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(&notes, at)? as usize;
            let descsz = u32_at(&notes, at + 4)? as usize;
            let kind = u32_at(&notes, at + 8)?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let end = desc_at + descsz.next_multiple_of(4);
            if kind == 3 && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
                return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            at = end;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_named_function_here() -> usize {
        std::hint::black_box(a_named_function_here as *const () as usize)
    }

    #[test]
    fn addresses_are_named_from_the_module_map_as_the_process_itself_names_them() {
        let modules = loaded_modules();
        assert!(modules.len() > 2, "{modules:?}");
        assert!(
            modules[0].path.ends_with(
                std::env::current_exe()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            ),
            "{:?}",
            modules[0]
        );
        let libc_module = modules
            .iter()
            .find(|m| m.path.contains("libc.so"))
            .expect("libc is loaded");
        assert!(!libc_module.ranges.is_empty());
        let mut resolver = ModuleResolver::new(modules);
        // A Rust function of this test binary, by its DWARF; a C function of libc, by
        // its symbols or its debug file.
        let ours = resolver.names(a_named_function_here() as u64);
        assert!(
            ours.iter().any(|n| n.ends_with("a_named_function_here")),
            "{ours:?}"
        );
        let malloc_usable_size = libc::malloc_usable_size as *const () as u64;
        let theirs = resolver.names(malloc_usable_size);
        assert!(
            theirs.iter().any(|n| n.contains("malloc_usable_size")),
            "{theirs:?}"
        );
        assert_eq!(resolver.names(8), vec!["?? [?]".to_owned()]);
    }

    #[test]
    fn a_build_id_is_read_from_the_notes_and_nonsense_has_none() {
        let own = std::env::current_exe().unwrap();
        // The test binary may be linked without one; libc always has one on Debian.
        let libc_path = loaded_modules()
            .into_iter()
            .find(|m| m.path.contains("libc.so"))
            .unwrap()
            .path;
        let id = build_id(Path::new(&libc_path)).expect("libc has a build id");
        assert_eq!(id.len(), 20, "{id:?}");
        let debug = debug_file(&id);
        assert!(debug.starts_with("/usr/lib/debug/.build-id/"));
        assert!(debug.to_string_lossy().ends_with(".debug"));
        let _ = build_id(&own);
        assert_eq!(build_id(Path::new("/etc/hostname")), None);
        assert_eq!(build_id(Path::new("/no/such/file")), None);
    }
}
