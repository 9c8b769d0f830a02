//! The signals that end a run: SIGINT (Ctrl-C), SIGTERM, SIGHUP and
//! SIGQUIT. They are caught on a thread of their own from before the
//! launch: the first asks the program to stop (nodes get the termination
//! notice), a second one interrupts it at once.

use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::launch::ProgramHandle;

/// The signals that stop a program.
pub const STOPPING: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// Where caught signals go: to the running program, or (while it starts)
/// counted, to be applied as soon as there is a program to stop.
#[derive(Default)]
pub struct Interrupts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    program: Option<ProgramHandle>,
    pending: u32,
    first: Option<i32>,
}

impl Interrupts {
    /// Catch [`STOPPING`] from now on.
    pub fn catch() -> std::io::Result<Arc<Self>> {
        let interrupts = Arc::new(Interrupts::default());
        let mut signals = signal_hook::iterator::Signals::new(STOPPING)?;
        let caught = interrupts.clone();
        std::thread::Builder::new()
            .name("lp-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    caught.deliver(signal);
                }
            })?;
        Ok(interrupts)
    }

    fn deliver(&self, signal: i32) {
        tracing::debug!("caught signal {signal}");
        let mut state = crate::lock(&self.state);
        state.first.get_or_insert(signal);
        match &state.program {
            Some(program) => program.interrupt(),
            None => state.pending += 1,
        }
    }

    /// Send signals to `program` from now on, those caught so far first.
    pub fn attach(&self, program: ProgramHandle) {
        let mut state = crate::lock(&self.state);
        for _ in 0..state.pending {
            program.interrupt();
        }
        state.pending = 0;
        state.program = Some(program);
    }

    /// The exit code of a program a signal interrupted: 128 + the number of
    /// the first signal, as a shell reports a process that signal killed
    /// (130 for Ctrl-C).
    pub fn exit_code(&self) -> Option<i32> {
        crate::lock(&self.state).first.map(|signal| 128 + signal)
    }
}
