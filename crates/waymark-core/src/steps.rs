//! The step components a plan runs: the built-in SQL step and every
//! component a `step.toml` pins, each loaded once and checked against its
//! pin, with the limits it runs under.
//!
//! One `Steps` is shared by every executor of a run (one per database), so a
//! component is compiled and its digest checked once however many databases
//! it runs against.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use waymark_host::{Limits, StepComponent, StepHost};

use crate::error::Error;
use crate::source::{ComponentStep, Migration, Step};

/// The step host and the components loaded into it, by pinned digest.
pub struct Steps {
    host: StepHost,
    /// Behind a mutex because executors of several databases share it; a
    /// component is loaded while planning, before anything runs.
    loaded: Mutex<HashMap<String, StepComponent>>,
}

impl std::fmt::Debug for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steps").field("host", &self.host).finish()
    }
}

impl Steps {
    /// A host with these limits as every step's ceiling; `cache_dir` is
    /// where compiled components are kept (`None`: the default place).
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, Error> {
        let host = match cache_dir {
            Some(dir) => StepHost::with_cache_dir(limits, Some(dir))?,
            None => StepHost::new(limits)?,
        };
        Ok(Steps {
            host,
            loaded: Mutex::default(),
        })
    }

    pub(crate) fn host(&self) -> &StepHost {
        &self.host
    }

    /// Loads the component a migration pins, unless it is loaded already:
    /// a file whose digest differs from its pin, or a step asking for more
    /// than the operator allows, refuses.
    pub(crate) fn load(&self, m: &Migration) -> Result<(), Error> {
        let Step::Component(c) = &m.step else {
            return Ok(());
        };
        self.limits_for(m)?;
        if self.loaded.lock().unwrap().contains_key(&c.sha256) {
            return Ok(());
        }
        let component = self.read_pinned(m, c)?;
        self.loaded.lock().unwrap().insert(c.sha256.clone(), component);
        Ok(())
    }

    fn read_pinned(&self, m: &Migration, c: &ComponentStep) -> Result<StepComponent, Error> {
        let bytes = std::fs::read(&c.path).map_err(|e| Error::Refused {
            message: format!(
                "migration {}: cannot read its component {}: {e}",
                m.label(),
                c.path.display()
            ),
            hint: None,
        })?;
        let actual = waymark_host::digest(&bytes);
        if actual != c.sha256 {
            return Err(Error::Refused {
                message: format!(
                    "migration {}: component {} has SHA-256 {actual}, but {} pins {}",
                    m.label(),
                    c.path.display(),
                    m.up.path.display(),
                    c.sha256
                ),
                hint: Some("nothing ran; pin the component you mean to run".to_owned()),
            });
        }
        Ok(self.host.load(&step_name(m), &bytes)?)
    }

    /// The limits a migration's step runs under: what it asks for, capped
    /// by the operator's settings, which are also the defaults.
    pub(crate) fn limits_for(&self, m: &Migration) -> Result<Limits, Error> {
        let ceiling = self.host.limits().clone();
        let Step::Component(c) = &m.step else {
            // The built-in steps are waymark's own code: the ceiling is
            // there for plugins. What they hold grows with the script they
            // are given (the SQL step keeps it and its statements), so a
            // data load of 50 MB gets room for it on top of the ceiling.
            let script = m.up.text.len().max(m.down.as_ref().map_or(0, |d| d.text.len()));
            let mut limits = ceiling;
            limits.memory_bytes = limits.memory_bytes.saturating_add(script.saturating_mul(4));
            return Ok(limits);
        };
        let mut limits = ceiling.clone();
        if let Some(mib) = c.memory_mib {
            let ceiling_mib = ceiling.memory_bytes / (1024 * 1024);
            if mib > ceiling_mib {
                return Err(Error::Refused {
                    message: format!(
                        "migration {}: step asks for {mib} MiB of memory; the ceiling is {ceiling_mib} MiB",
                        m.label()
                    ),
                    hint: Some("raise --step-memory-mib (or [step] memory_mib) if the step needs it".to_owned()),
                });
            }
            limits.memory_bytes = mib * 1024 * 1024;
        }
        if let Some(timeout) = c.timeout {
            if timeout > ceiling.timeout {
                return Err(Error::Refused {
                    message: format!(
                        "migration {}: step asks for {} of CPU time; the ceiling is {}",
                        m.label(),
                        humantime::format_duration(timeout),
                        humantime::format_duration(ceiling.timeout)
                    ),
                    hint: Some("raise --step-timeout (or [step] timeout) if the step needs it".to_owned()),
                });
            }
            limits.timeout = timeout;
        }
        Ok(limits)
    }

    /// The loaded component of a migration ([`Steps::load`] first), and its
    /// limits.
    pub(crate) fn component(&self, m: &Migration) -> Result<(StepComponent, Limits), Error> {
        let step = match &m.step {
            Step::Sql => self.host.sql_step()?,
            Step::Ops(_) => self.host.ops_step()?,
            Step::Component(c) => self
                .loaded
                .lock()
                .unwrap()
                .get(&c.sha256)
                .cloned()
                .expect("the planner loads every component step of a plan before it runs"),
        };
        Ok((step, self.limits_for(m)?))
    }
}

/// The step's name in messages: `sql`, `ops`, or the component's file
/// name.
pub(crate) fn step_name(m: &Migration) -> String {
    match &m.step {
        Step::Sql => "sql".to_owned(),
        Step::Ops(_) => "ops".to_owned(),
        Step::Component(c) => c
            .path
            .file_name()
            .map_or_else(|| c.path.display().to_string(), |n| n.to_string_lossy().into_owned()),
    }
}
