//! While a reply streams, the terminal does not echo keys: what is typed ahead waits, unseen,
//! for the next prompt (the line editor then shows it), instead of landing inside the reply.
//! Ctrl-C still interrupts. The setting is put back after the reply and before any exit.

#[cfg(unix)]
mod imp {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};
    use std::sync::Mutex;

    static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

    pub fn echo_off() {
        let stdin = std::io::stdin();
        let Ok(t) = tcgetattr(&stdin) else { return };
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        if tcsetattr(&stdin, SetArg::TCSANOW, &quiet).is_ok() {
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        }
    }

    pub fn restore() {
        if let Some(t) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &t);
        }
    }
}

#[cfg(not(unix))]
mod imp {
    pub fn echo_off() {}
    pub fn restore() {}
}

pub use imp::{echo_off, restore};
