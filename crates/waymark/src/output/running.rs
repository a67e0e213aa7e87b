//! The migration running now, while it runs. A one-line `ALTER TABLE` can
//! take seconds behind a lock and a backfill minutes, and a command that
//! prints nothing meanwhile looks hung. On a terminal: a bar over the
//! batch with the running migration and its elapsed time, redrawn four
//! times a second while the database works. Elsewhere (a CI log): a line
//! once a migration has run [`FIRST_LINE`], then every [`EVERY_LINE`].

use std::sync::Mutex;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long a migration runs before a log says it still does: the time
/// after which someone watching starts to wonder.
const FIRST_LINE: Duration = Duration::from_secs(5);
/// How often the log says so after that.
const EVERY_LINE: Duration = Duration::from_secs(30);

/// The display of the running migration; off until [`Running::enable`].
#[derive(Default)]
pub(crate) struct Running {
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    #[default]
    Off,
    /// On, with nothing running.
    Idle { terminal: bool },
    /// A bar on the terminal.
    Bar(indicatif::ProgressBar),
    /// A log: the running migration's watcher, which stops when this
    /// sender goes.
    Lines { _stop: Sender<()> },
}

impl Running {
    /// Shows what runs from now on, as a bar on a terminal or lines in a
    /// log.
    pub(crate) fn enable(&self, terminal: bool) {
        *self.state.lock().unwrap() = State::Idle { terminal };
    }

    /// Migration `position` of `of` started.
    pub(crate) fn started(&self, label: &str, down: bool, position: usize, of: usize) {
        let mut state = self.state.lock().unwrap();
        let verb = if down { "reverting" } else { "applying" };
        match &*state {
            State::Off => {}
            State::Idle { terminal: true } => {
                // Drawn only once it says what runs.
                let bar = indicatif::ProgressBar::hidden();
                bar.set_length(of as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("[{bar:20}] {pos}/{len} {msg} ({secs})")
                        .expect("the template is valid")
                        .with_key("secs", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.1} s", s.elapsed().as_secs_f64());
                        })
                        .progress_chars("=> "),
                );
                bar.set_position(position.saturating_sub(1) as u64);
                bar.set_message(format!("{verb} {label}"));
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
                // Drawn while the database works and nothing calls back.
                bar.enable_steady_tick(Duration::from_millis(250));
                *state = State::Bar(bar);
            }
            State::Bar(bar) => {
                bar.set_position(position.saturating_sub(1) as u64);
                bar.set_message(format!("{verb} {label}"));
                bar.reset_elapsed();
            }
            State::Idle { terminal: false } | State::Lines { .. } => {
                let (stop, stopped) = std::sync::mpsc::channel::<()>();
                let label = label.to_owned();
                let started = Instant::now();
                std::thread::spawn(move || {
                    let mut wait = FIRST_LINE;
                    // Until the migration ends (a message, or the sender
                    // dropped), a line at each interval.
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                        eprintln!(
                            "still {verb} {label} ({position}/{of}): {} s",
                            started.elapsed().as_secs()
                        );
                        wait = EVERY_LINE;
                    }
                });
                *state = State::Lines { _stop: stop };
            }
        }
    }

    /// A batched step's own progress, beside the migration's.
    pub(crate) fn step(&self, label: &str, done: u64, total: Option<u64>) -> bool {
        let state = self.state.lock().unwrap();
        let State::Bar(bar) = &*state else { return false };
        let of = total.map(|t| format!("/{t}")).unwrap_or_default();
        let verb = bar.message();
        let verb = verb.split(':').next().unwrap_or(label);
        bar.set_message(format!("{verb}: {done}{of}"));
        true
    }

    /// The running migration ended (or was skipped): the log's watcher
    /// stops; the bar stays as it is until the next starts, or until
    /// [`Running::clear`].
    pub(crate) fn ended(&self) {
        let mut state = self.state.lock().unwrap();
        if let State::Lines { .. } = &*state {
            *state = State::Idle { terminal: false };
        }
    }

    /// Prints `line` above the bar, or plainly when there is none.
    pub(crate) fn println(&self, line: &str) {
        let state = self.state.lock().unwrap();
        match &*state {
            State::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            _ => eprintln!("{line}"),
        }
    }

    /// Takes the bar off the terminal, before a summary or an error.
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        match std::mem::take(&mut *state) {
            State::Bar(bar) => {
                bar.finish_and_clear();
                *state = State::Idle { terminal: true };
            }
            State::Lines { .. } => *state = State::Idle { terminal: false },
            other => *state = other,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.clear();
    }
}
