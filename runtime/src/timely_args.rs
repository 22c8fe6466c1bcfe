//! Timely's own flags (`-w`, `-n`, `-p`, `-h`) pass through after `--`; we only need to know the
//! worker threads per process, to pick each process's view-publishing worker.

/// Threads per process from timely's `-w N` / `-wN` / `--workers N` / `--workers=N` (default 1).
pub fn workers_per_process(args: &[String]) -> Result<usize, String> {
    let workers = numeric_flag(args, "-w", "--workers")?.unwrap_or(1);
    if workers == 0 {
        return Err("invalid worker count 0".into());
    }
    Ok(workers)
}

/// This process's index from timely's `-p N` / `--process N` (default 0).
pub fn process_index(args: &[String]) -> Result<usize, String> {
    Ok(numeric_flag(args, "-p", "--process")?.unwrap_or(0))
}

/// Workers of the whole cluster: threads per process times processes (`-n`, default 1).
pub fn peers(args: &[String]) -> Result<usize, String> {
    let processes = numeric_flag(args, "-n", "--processes")?.unwrap_or(1).max(1);
    Ok(workers_per_process(args)? * processes)
}

/// The last value of a numeric flag given as `-fN`, `-f N`, `--flag N` or `--flag=N`.
fn numeric_flag(args: &[String], short: &str, long: &str) -> Result<Option<usize>, String> {
    let mut iter = args.iter();
    let mut found = None;
    let long_eq = format!("{long}=");
    while let Some(arg) = iter.next() {
        let value = if arg == short || arg == long {
            iter.next().cloned()
        } else if let Some(v) = arg.strip_prefix(&long_eq) {
            Some(v.to_owned())
        } else if let Some(v) = arg.strip_prefix(short).filter(|v| !v.is_empty()) {
            Some(v.to_owned())
        } else {
            continue;
        };
        let value = value.ok_or_else(|| format!("{arg} needs a number"))?;
        found = Some(
            value
                .parse::<usize>()
                .map_err(|_| format!("invalid {long} value {value:?}"))?,
        );
    }
    Ok(found)
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
        assert!(workers_per_process(&args(&["-w", "0"])).is_err());
    }

    #[test]
    fn process_index_defaults_to_zero() {
        assert_eq!(process_index(&args(&["-w", "2"])), Ok(0));
        assert_eq!(
            process_index(&args(&["-n", "2", "-p", "1", "-h", "hosts"])),
            Ok(1)
        );
        assert_eq!(process_index(&args(&["--process=3"])), Ok(3));
        assert!(process_index(&args(&["-p", "x"])).is_err());
        assert_eq!(peers(&args(&["-w", "2", "-n", "3", "-p", "1"])), Ok(6));
        assert_eq!(peers(&args(&[])), Ok(1));
    }

    #[test]
    fn timely_accepts_the_same_flags() {
        assert!(timely_config(&args(&["-w", "2"])).is_ok());
        assert!(timely_config(&args(&["--bogus"])).is_err());
    }
}
