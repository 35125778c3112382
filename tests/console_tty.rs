//! The console on a real terminal: `ringkv client` runs on the slave side
//! of a pseudo-terminal (its controlling terminal, so a Ctrl-C that raw
//! mode failed to catch would SIGINT it), the test types keystrokes into
//! the master side, and reads back what a user would see: the bytes the
//! console wrote, played on a small model of a terminal screen.
//!
//! Every wait for the screen is bounded: a broken editor fails the test
//! with the screen it left, instead of hanging it.

#![cfg(target_os = "linux")]

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::screen::Screen;
use common::{unique_dir, Cluster};

/// How long the screen may take to show what the test waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The pseudo-terminal's width: wide enough that no line here wraps.
const COLUMNS: u16 = 120;

const UP: &str = "\x1b[A";
const RIGHT: &str = "\x1b[C";
const DELETE: &str = "\x1b[3~";
const BACKSPACE: &str = "\x7f";
const CTRL_A: &str = "\x01";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";
const CTRL_E: &str = "\x05";
const CTRL_W: &str = "\x17";
const ENTER: &str = "\r";

#[test]
fn a_user_edits_recalls_cancels_and_quits_and_the_history_is_kept() {
    let cluster = Cluster::start(4);
    let home = unique_dir();
    let history_file = home.join(".ringkv_history");

    // First session: the history file is the default one in $HOME.
    let mut console = Console::start(&cluster.config, |c| {
        c.env("HOME", &home).env_remove("RINGKV_HISTORY");
    });
    console.wait_for_prompt();
    console.type_keys(&["put 1 hellx", BACKSPACE, "o", ENTER]);
    console.wait_for_answer("OK");
    console.type_keys(&["get 1", ENTER]);
    console.wait_for_answer("hello");

    // Up twice brings back the put, cursor at its end.
    console.type_keys(&[UP, UP]);
    console.wait_until("the put is recalled", |screen| {
        screen.cursor_row_text() == "ringkv@0> put 1 hello" && screen.cursor_at_end_of_row()
    });
    // Edit it: Ctrl-W kills the value; the new one has a two-byte
    // character, which Delete, after seven steps right from the start,
    // removes whole.
    console.type_keys(&[CTRL_W, "wörld", CTRL_A]);
    console.type_keys(&[RIGHT; 7]);
    console.type_keys(&[DELETE, "ø", CTRL_E, ENTER]);
    console.wait_for_answer("OK");
    console.type_keys(&["get 1", ENTER]);
    console.wait_for_answer("wørld");

    // Ctrl-C abandons a half-typed line and the console goes on.
    console.type_keys(&["put 2 half", CTRL_C]);
    console.wait_for_prompt();
    assert!(console.is_running(), "Ctrl-C ended the console");
    console.type_keys(&["get 2", ENTER]);
    console.wait_for_answer("NOT FOUND");

    // Ctrl-D on an empty line quits, successfully.
    console.type_keys(&[CTRL_D]);
    let status = console.wait_for_exit();
    assert!(status.success(), "the console exited with {status}");
    let screen = console.screen();
    assert_eq!(
        screen.rows()[1..],
        [
            "ringkv@0> put 1 hello",
            "OK",
            "ringkv@0> get 1",
            "hello",
            "ringkv@0> put 1 wørld",
            "OK",
            "ringkv@0> get 1",
            "wørld",
            "ringkv@0> put 2 half^C",
            "ringkv@0> get 2",
            "NOT FOUND",
            "ringkv@0>",
        ],
        "the screen at the end:\n{screen}"
    );
    console.assert_terminal_restored();
    assert_eq!(
        file_lines(&history_file),
        ["put 1 hello", "get 1", "put 1 wørld", "get 1", "get 2"],
        "the abandoned line is not in the history"
    );

    // Second session, with the file named by RINGKV_HISTORY and no HOME:
    // the history of the first is there to recall.
    let mut console = Console::start(&cluster.config, |c| {
        c.env("RINGKV_HISTORY", &history_file).env_remove("HOME");
    });
    console.wait_for_prompt();
    console.type_keys(&[UP]);
    console.wait_until("the last line of the first session", |screen| {
        screen.cursor_row_text() == "ringkv@0> get 2"
    });
    console.type_keys(&[UP, UP, ENTER]);
    console.wait_for_answer("OK");
    // Two lines pasted at once: the second waits its turn, and each shows
    // as if typed.
    console.type_keys(&["put 5 pasted\rget 5\r"]);
    console.wait_for_answer("pasted");
    console.type_keys(&["quit", ENTER]);
    let status = console.wait_for_exit();
    assert!(status.success(), "the console exited with {status}");
    let screen = console.screen();
    assert_eq!(
        screen.rows()[1..],
        [
            "ringkv@0> put 1 wørld",
            "OK",
            "ringkv@0> put 5 pasted",
            "OK",
            "ringkv@0> get 5",
            "pasted",
            "ringkv@0> quit",
        ],
        "the screen at the end:\n{screen}"
    );
    console.assert_terminal_restored();
    assert_eq!(
        file_lines(&history_file),
        [
            "put 1 hello",
            "get 1",
            "put 1 wørld",
            "get 1",
            "get 2",
            "put 1 wørld",
            "put 5 pasted",
            "get 5",
            "quit"
        ],
    );
    assert_eq!(
        cluster
            .get(1, 1, ringkv::protocol::proto::Consistency::All)
            .unwrap()
            .as_deref(),
        Some("wørld")
    );
    fs::remove_dir_all(home).unwrap();
}

fn file_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("the history file")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `ringkv client --coordinator 0` on a pseudo-terminal of its own.
struct Console {
    child: Child,
    /// The master side, to type into.
    keyboard: File,
    /// The slave side, kept open to read its settings after the console exits.
    terminal: File,
    /// Everything the console has written, as read from the master side.
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl Console {
    fn start(config: &Path, environment: impl FnOnce(&mut Command)) -> Console {
        let (master, slave) = pty::open(COLUMNS);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringkv"));
        command
            .arg("client")
            .arg("--config")
            .arg(config)
            .arg("--coordinator")
            .arg("0")
            .stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(slave.try_clone().expect("dup slave")));
        environment(&mut command);
        pty::make_controlling_terminal(&mut command);
        let child = command.spawn().expect("start ringkv client");
        drop(command);
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = master.try_clone().expect("dup master");
        let shared = output.clone();
        std::thread::spawn(move || {
            let mut bytes = [0u8; 4096];
            // Ends with EIO once no process holds the slave side open.
            while let Ok(read @ 1..) = reader.read(&mut bytes) {
                let (buffer, arrived) = &*shared;
                buffer.lock().unwrap().extend_from_slice(&bytes[..read]);
                arrived.notify_all();
            }
        });
        Console {
            child,
            keyboard: master,
            terminal: slave,
            output,
        }
    }

    fn type_keys(&mut self, keys: &[&str]) {
        for key in keys {
            self.keyboard.write_all(key.as_bytes()).expect("type");
        }
    }

    fn screen(&self) -> Screen {
        Screen::play(&self.output.0.lock().unwrap())
    }

    /// Waits until the screen satisfies `check`, or fails showing it.
    fn wait_until(&self, what: &str, check: impl Fn(&Screen) -> bool) {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        let (buffer, arrived) = &*self.output;
        let mut bytes = buffer.lock().unwrap();
        loop {
            let screen = Screen::play(&bytes);
            if check(&screen) {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "waited in vain for {what}; the screen:\n{screen}"
            );
            bytes = arrived.wait_timeout(bytes, deadline - now).unwrap().0;
        }
    }

    /// Waits for an empty prompt with the cursor after it.
    fn wait_for_prompt(&self) {
        self.wait_until("a prompt", |screen| {
            screen.cursor_row_text() == "ringkv@0>" && screen.cursor.1 == "ringkv@0> ".len()
        });
    }

    /// Waits for `answer` on the row above a fresh prompt.
    fn wait_for_answer(&self, answer: &str) {
        self.wait_until(&format!("the answer {answer:?}"), |screen| {
            let rows = screen.rows();
            screen.cursor_row_text() == "ringkv@0>"
                && screen.cursor.0 >= 1
                && rows[screen.cursor.0 - 1] == answer
        });
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the console").is_none()
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the console") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the console did not exit; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The terminal echoes, reads lines and sends signals again.
    fn assert_terminal_restored(&self) {
        let (input_flags, local_flags) = pty::flags(&self.terminal);
        for (flag, name) in [
            (libc::ICANON, "ICANON"),
            (libc::ECHO, "ECHO"),
            (libc::ISIG, "ISIG"),
        ] {
            assert!(local_flags & flag != 0, "{name} is still off");
        }
        assert!(input_flags & libc::ICRNL != 0, "ICRNL is still off");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The test's unsafe calls: opening a pseudo-terminal, giving it to a
/// child as its controlling terminal, reading its settings.
mod pty {
    use std::ffi::CStr;
    use std::fs::{self, File};
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// A new pseudo-terminal `columns` wide: (master, slave).
    pub fn open(columns: u16) -> (File, File) {
        // SAFETY: posix_openpt takes only flags and returns a new fd or -1.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened here and nothing else owns it.
        let master = unsafe { File::from_raw_fd(fd) };
        let mut name = [0 as libc::c_char; 256];
        // SAFETY: `fd` is an open pty master; `name` is writable for its
        // whole given length, and ptsname_r writes a NUL-terminated path.
        unsafe {
            assert_eq!(libc::grantpt(fd), 0, "grantpt");
            assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
            assert_eq!(
                libc::ptsname_r(fd, name.as_mut_ptr(), name.len()),
                0,
                "ptsname_r"
            );
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .expect("pty path")
            .to_string();
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .expect("open the pty slave");
        let size = libc::winsize {
            ws_row: 40,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize through the pointer.
        let resized = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(resized, 0, "TIOCSWINSZ");
        (master, slave)
    }

    /// The child leads a session of its own whose controlling terminal is
    /// its stdin (the slave): Ctrl-C typed there in cooked mode would be
    /// its SIGINT, as in a real login.
    pub fn make_controlling_terminal(command: &mut Command) {
        // SAFETY: setsid and ioctl are async-signal-safe, and the closure
        // touches no memory of the parent. It runs after stdin is set up.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The terminal's input and local flags (c_iflag, c_lflag).
    pub fn flags(terminal: &File) -> (libc::tcflag_t, libc::tcflag_t) {
        let mut settings = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: the fd is open and `settings` is termios-sized.
        let got = unsafe { libc::tcgetattr(terminal.as_raw_fd(), settings.as_mut_ptr()) };
        assert_eq!(got, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        // SAFETY: tcgetattr succeeded, so it filled `settings` in.
        let settings = unsafe { settings.assume_init() };
        (settings.c_iflag, settings.c_lflag)
    }
}
