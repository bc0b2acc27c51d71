//! Best-effort printing for the binaries. `println!` panics when stdout is a closed pipe
//! (`sluice status | head -1`), which would abort a migration or a backfill for want of a
//! reader; output is for people, so a write that fails is dropped and the work goes on.
//! The exit code still tells how the run ended.
//!
//! Every line passes through [`crate::redact::scrub_registered`] on its way out: whatever
//! path a message took, a password the process was given prints as `***`; and through
//! [`crate::display::escape_controls`]: no escape sequence from data reaches the terminal.

/// `println!` that ignores write errors.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let text = ::std::format!($($arg)*);
        let _ = ::std::writeln!(
            ::std::io::stdout(),
            "{}",
            $crate::redact::scrub_registered(&$crate::display::escape_controls(&text))
        );
    }};
}

/// `print!` that ignores write errors.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let text = ::std::format!($($arg)*);
        let _ = ::std::write!(
            ::std::io::stdout(),
            "{}",
            $crate::redact::scrub_registered(&$crate::display::escape_controls(&text))
        );
    }};
}

/// `eprintln!` that ignores write errors.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let text = ::std::format!($($arg)*);
        let _ = ::std::writeln!(
            ::std::io::stderr(),
            "{}",
            $crate::redact::scrub_registered(&$crate::display::escape_controls(&text))
        );
    }};
}
