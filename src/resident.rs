//! Gives back to the system the memory an idle exporter holds but no longer uses.
//!
//! Two kinds of pages stay resident after they are last needed:
//! - **Freed heap.** glibc keeps memory freed below live data inside the process (one arena:
//!   `main.rs` sets it), and only its top is trimmed on its own. Two moments free much at once: a
//!   load of the rules compiles the rules' JSON Schema and drops it when done (`rules::schema`,
//!   0.35 MiB of idle RSS), and an evaluation drops its rows, its families, its rendered text and the
//!   snapshot it replaced (at 100k series tens of MB, which stayed resident until the next
//!   evaluation allocated again, so each evaluation's peak was reached on top of the previous one's
//!   leftovers; README, "Performance"). `malloc_trim(0)` returns every whole free page of the heap;
//!   it walks the free lists under the arena's lock, once per evaluation, off the scrape path.
//! - **Start-up code.** The kernel maps code around each page a thread touches (fault-around), so
//!   the code that only a load of the rules (YAML, the JSON Schema, the command line) and a rule's
//!   first evaluation (connecting, preparing) run leaves most of the binary's `.text` resident for
//!   the life of the process: 7.0 MiB of the binary's 8.4 MiB of code in an idle exporter. Dropping
//!   the read-only pages of every loaded object after those moments and letting the exporter run,
//!   only what evaluations and scrapes touch comes back (README, "Performance": idle RSS). This is
//!   what the Linux kernel does with its own `__init` code, done with `madvise(MADV_DONTNEED)`: the
//!   pages are clean copies of the files, so they stay in the page cache (shared, reclaimable) and
//!   a later use is a minor fault, not a read from disk.
//!
//! Only segments without write permission are touched, and no object whose code the loader patches
//! (text relocations): their pages are exactly the file's, so dropping them loses nothing. One thing
//! could be: a debugger's software breakpoint written into a dropped page while the process runs
//! (gdb by default inserts them only while the process runs, and again at each resume).

/// Returns the free pages of the heap to the system (glibc); elsewhere nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed_heap() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator; it takes its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_heap() {}

/// Drops the resident pages of every loaded object's read-only segments (code, constants), which
/// come back from the page cache as they are used again. Returns the bytes advised (0 where not
/// supported: Linux with glibc on 64-bit only).
pub fn drop_read_only_image_pages() -> usize {
    image::drop_pages()
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod image {
    use std::ffi::{c_int, c_void, CStr};

    /// `DT_NULL`, `DT_TEXTREL`, `DT_FLAGS` and `DF_TEXTREL` of the ELF specification: the end of the
    /// dynamic section, and the two ways an object says the loader patches its code.
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;

    /// One entry of an object's dynamic section (`Elf64_Dyn`).
    #[repr(C)]
    struct DynamicEntry {
        tag: i64,
        value: u64,
    }

    pub(super) fn drop_pages() -> usize {
        let mut advised: usize = 0;
        // SAFETY: the loader calls `visit_object` with valid headers while it holds its lock (no
        // object is unloaded meanwhile), and `data` points to `advised`, alive for the whole call.
        unsafe {
            libc::dl_iterate_phdr(Some(visit_object), (&mut advised as *mut usize).cast());
        }
        advised
    }

    /// Advises away the read-only `PT_LOAD` segments of one loaded object.
    unsafe extern "C" fn visit_object(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid `dl_phdr_info` and the `data` given in drop_pages.
        let (info, advised) = unsafe { (&*info, &mut *data.cast::<usize>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        if is_virtual(info) || has_text_relocations(info.dlpi_addr, headers) {
            return 0;
        }
        let page = page_size();
        for header in headers.iter().filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0) {
            *advised +=
                advise_away(info.dlpi_addr.wrapping_add(header.p_vaddr) as usize, header.p_memsz as usize, page);
        }
        0
    }

    /// The vDSO and other objects not backed by a file on disk (their name is not an absolute path;
    /// the program itself has an empty one).
    fn is_virtual(info: &libc::dl_phdr_info) -> bool {
        if info.dlpi_name.is_null() {
            return false;
        }
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
        !name.is_empty() && !name.starts_with(b"/")
    }

    /// Whether the loader patched this object's code (its pages then differ from the file's).
    fn has_text_relocations(base: u64, headers: &[libc::Elf64_Phdr]) -> bool {
        let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
            return false;
        };
        let count = dynamic.p_memsz as usize / std::mem::size_of::<DynamicEntry>();
        let first = base.wrapping_add(dynamic.p_vaddr) as *const DynamicEntry;
        // SAFETY: PT_DYNAMIC of a loaded object is mapped and holds `count` entries at most.
        let entries = unsafe { std::slice::from_raw_parts(first, count) };
        entries
            .iter()
            .take_while(|e| e.tag != DT_NULL)
            .any(|e| e.tag == DT_TEXTREL || (e.tag == DT_FLAGS && e.value & DF_TEXTREL != 0))
    }

    /// `MADV_DONTNEED` on the whole pages inside `[start, start + len)`; the bytes advised.
    fn advise_away(start: usize, len: usize, page: usize) -> usize {
        let first = start.next_multiple_of(page);
        let end = start.saturating_add(len) / page * page;
        if end <= first {
            return 0;
        }
        // SAFETY: the range lies inside a read-only, file-backed segment of a loaded object whose
        // pages equal the file's; dropping them only makes the next access fault them back in.
        let done = unsafe { libc::madvise(first as *mut c_void, end - first, libc::MADV_DONTNEED) };
        if done == 0 {
            end - first
        } else {
            0
        }
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
mod image {
    pub(super) fn drop_pages() -> usize {
        0
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// The resident file-backed KiB of this process (`RssFile` of `/proc/self/status`).
    fn resident_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn read_only_pages_are_dropped_and_the_code_still_runs() {
        let before = resident_file_kib();
        let advised = image::drop_pages();
        let after = resident_file_kib();
        assert!(advised > 1 << 20, "expected the test binary's code to be advised, got {advised} bytes");
        assert!(after < before, "expected RssFile to fall, was {before} kB, then {after} kB");
        // The code faults back in from the page cache: the process goes on working.
        let text: String = (0..1000).map(|i| format!("{i},")).collect();
        assert_eq!(text.split(',').filter(|s| !s.is_empty()).count(), 1000);
        assert!(resident_file_kib() > 0);
    }
}
