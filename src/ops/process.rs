//! What this process costs the machine: its CPU time (`getrusage`) and
//! resident memory (`/proc/self/statm`). The replica reports both (metrics reply and
//! Prometheus); `ringkv bench` reads its own CPU time so that the load it
//! generates can be weighed against what the cluster spent serving it.

/// User and system CPU time a process has used, summed over its threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent running this process's own code, in microseconds.
    pub user_us: u64,
    /// Time the kernel spent on its behalf (system calls, page faults).
    pub system_us: u64,
}

impl CpuTime {
    /// User plus system time, in microseconds.
    pub fn total_us(&self) -> u64 {
        self.user_us + self.system_us
    }

    /// The time used between `earlier` and `self` (zero where a counter
    /// went backwards, as after a restart).
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user_us: self.user_us.saturating_sub(earlier.user_us),
            system_us: self.system_us.saturating_sub(earlier.system_us),
        }
    }
}

/// This process's CPU time so far, summed over its threads, from
/// `getrusage`, in microseconds (`/proc/self/stat` counts 10 ms ticks, too
/// coarse for a short run); zero if the call failed, which on Linux it
/// cannot with these arguments.
pub fn cpu_time() -> CpuTime {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is
    // given and nothing else; the struct is read only when it returned 0.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return CpuTime::default();
        }
        usage.assume_init()
    };
    let micros = |time: libc::timeval| {
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(time.tv_usec).unwrap_or(0)
    };
    CpuTime {
        user_us: micros(usage.ru_utime),
        system_us: micros(usage.ru_stime),
    }
}

/// Resident memory of this process, from `/proc/self/statm`; 0 where that
/// cannot be read.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        // Spin until the CPU clock itself has moved 20 ms (wall time says
        // nothing on a loaded machine, where a spin may barely run).
        let start = cpu_time();
        let began = std::time::Instant::now();
        let mut spin = 0u64;
        let spent = loop {
            spin = spin.wrapping_add(std::hint::black_box(1));
            let spent = cpu_time().since(&start).total_us();
            if spent >= 20_000 || began.elapsed() > std::time::Duration::from_secs(20) {
                break spent;
            }
        };
        assert!(spin > 0);
        assert!((20_000..1_000_000).contains(&spent), "{spent} us");
        assert!(resident_bytes() > 0);
    }

    #[test]
    fn cpu_time_counts_microseconds_not_ticks() {
        // /proc counts 10 ms ticks; getrusage is finer. Some of twenty
        // readings a few microseconds of work apart must differ by less
        // than a tick.
        let readings: Vec<u64> = (0..20)
            .map(|_| {
                let mut spin = 0u64;
                for _ in 0..20_000 {
                    spin = spin.wrapping_add(std::hint::black_box(1));
                }
                assert!(spin > 0);
                cpu_time().total_us()
            })
            .collect();
        assert!(
            readings
                .windows(2)
                .any(|pair| pair[1] > pair[0] && pair[1] - pair[0] < 10_000),
            "{readings:?}"
        );
    }

    #[test]
    fn since_never_goes_below_zero() {
        let later = CpuTime {
            user_us: 10,
            system_us: 5,
        };
        let earlier = CpuTime {
            user_us: 20,
            system_us: 1,
        };
        assert_eq!(
            later.since(&earlier),
            CpuTime {
                user_us: 0,
                system_us: 4
            }
        );
        assert_eq!(later.total_us(), 15);
    }
}
