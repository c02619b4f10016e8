use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
    match wick::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, never a backtrace: users script against this.
            let msg = e.to_string().replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// glibc returns a large freed buffer to the kernel (`munmap`, or trimming the heap top),
/// and the next forward pass's buffer of the same size then faults in zeroed pages again
/// (~3% of a long prefill). Buffers up to 32 MiB come from the heap and freed memory stays
/// for reuse; larger ones (weights) are still mapped and unmapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: glibc's mallopt with valid parameters, before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
