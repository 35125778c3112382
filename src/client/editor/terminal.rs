//! The terminal itself: whether the console talks to one, raw mode, and
//! its width. All of the console's unsafe code is here, and only here.
//!
//! Raw mode lasts exactly as long as a `RawMode` value: dropping it puts
//! the terminal back as it was, on every path out of the editor (Enter,
//! Ctrl-D, an error, a panic that unwinds), so a shell never gets back a
//! terminal that does not echo. Raw mode also turns off the signal keys:
//! Ctrl-C arrives as a byte for the editor instead of a SIGINT that would
//! end the process mid-line. Between lines (while a command runs) the
//! terminal is as the user had it, so Ctrl-C there stops the console.

use std::io::{self, IsTerminal};

/// Whether both standard input and standard output are terminals: only
/// then does the console edit lines. Anything else (a pipe, a file) reads
/// lines as they come and writes plain answers.
pub fn is_interactive() -> bool {
    cfg!(unix) && io::stdin().is_terminal() && io::stdout().is_terminal()
}

#[cfg(unix)]
pub use unix::{columns, RawMode};

#[cfg(unix)]
mod unix {
    use std::io;
    use std::mem::MaybeUninit;

    const STDIN: libc::c_int = 0;
    const STDOUT: libc::c_int = 1;

    /// Standard input in raw mode until dropped: bytes as typed, no echo,
    /// no line buffering, no signal keys, no flow control.
    pub struct RawMode {
        original: libc::termios,
    }

    impl RawMode {
        /// Puts standard input's terminal in raw mode. Output processing
        /// stays on, so a `\n` written meanwhile still starts a new row.
        pub fn enter() -> io::Result<RawMode> {
            let mut original = MaybeUninit::<libc::termios>::uninit();
            // SAFETY: `original` points to writable memory the size of a
            // termios; fd 0 is valid for the whole process (std never
            // closes it), and tcgetattr only writes through the pointer.
            if unsafe { libc::tcgetattr(STDIN, original.as_mut_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: tcgetattr returned 0, so it filled in the termios.
            let original = unsafe { original.assume_init() };
            let mut raw = original;
            raw.c_iflag &= !(libc::BRKINT
                | libc::ICRNL
                | libc::INLCR
                | libc::IGNCR
                | libc::INPCK
                | libc::ISTRIP
                | libc::PARMRK
                | libc::IXON);
            raw.c_cflag |= libc::CS8;
            raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            // SAFETY: `raw` is a valid termios read from this terminal and
            // only has flags cleared or set; tcsetattr only reads it.
            if unsafe { libc::tcsetattr(STDIN, libc::TCSADRAIN, &raw) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RawMode { original })
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            // SAFETY: `original` is the termios tcgetattr gave for this
            // terminal; tcsetattr only reads it. A failure (the terminal
            // has gone away) leaves nothing to restore.
            unsafe { libc::tcsetattr(STDIN, libc::TCSADRAIN, &self.original) };
        }
    }

    /// The terminal's width in columns, if standard output is a terminal
    /// that knows it. Asked before every redraw, so a resize is seen.
    pub fn columns() -> Option<usize> {
        let mut size = MaybeUninit::<libc::winsize>::uninit();
        // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which
        // points to memory of that size; fd 1 stays open for the process.
        if unsafe { libc::ioctl(STDOUT, libc::TIOCGWINSZ, size.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: the ioctl returned 0, so it filled in the winsize.
        let size = unsafe { size.assume_init() };
        (size.ws_col > 0).then_some(usize::from(size.ws_col))
    }
}

#[cfg(not(unix))]
pub use elsewhere::{columns, RawMode};

/// Without termios there is no raw mode; `is_interactive` is then false,
/// so none of this is called.
#[cfg(not(unix))]
mod elsewhere {
    use std::io;

    /// Raw mode, which this platform does not have.
    pub struct RawMode;

    impl RawMode {
        /// Always an error here.
        pub fn enter() -> io::Result<RawMode> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }
    }

    /// Unknown here.
    pub fn columns() -> Option<usize> {
        None
    }
}
