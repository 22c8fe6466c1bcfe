//! Timely's own flags (`-w`, `-n`, `-p`, `-h`) pass through after `--`; we only need to know the
//! worker threads per process, to pick each process's view-publishing worker.

/// Threads per process from timely's `-w N` / `-wN` / `--workers N` / `--workers=N` (default 1).
pub fn workers_per_process(args: &[String]) -> Result<usize, String> {
    let mut iter = args.iter();
    let mut workers = 1;
    while let Some(arg) = iter.next() {
        let value = if arg == "-w" || arg == "--workers" {
            iter.next().cloned()
        } else if let Some(v) = arg.strip_prefix("--workers=") {
            Some(v.to_owned())
        } else if let Some(v) = arg.strip_prefix("-w").filter(|v| !v.is_empty()) {
            Some(v.to_owned())
        } else {
            continue;
        };
        let value = value.ok_or_else(|| format!("{arg} needs a number"))?;
        workers = value
            .parse::<usize>()
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| format!("invalid worker count {value:?}"))?;
    }
    Ok(workers)
}

/// Timely's configuration from the pass-through flags.
pub fn timely_config(args: &[String]) -> Result<timely::Config, String> {
    timely::Config::from_args(args.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_every_spelling() {
        assert_eq!(workers_per_process(&args(&[])), Ok(1));
        assert_eq!(workers_per_process(&args(&["-w", "2"])), Ok(2));
        assert_eq!(workers_per_process(&args(&["-w3"])), Ok(3));
        assert_eq!(
            workers_per_process(&args(&["-n", "2", "--workers=4", "-p", "1"])),
            Ok(4)
        );
        assert!(workers_per_process(&args(&["-w", "zero"])).is_err());
        assert!(workers_per_process(&args(&["-w"])).is_err());
    }

    #[test]
    fn timely_accepts_the_same_flags() {
        assert!(timely_config(&args(&["-w", "2"])).is_ok());
        assert!(timely_config(&args(&["--bogus"])).is_err());
    }
}
