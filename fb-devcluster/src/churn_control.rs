//! The churn job's control: one background thread at a time, bounded in steps, stopped by
//! clearing the faults or stopping the cluster, observable (steps done, running or not).
//! What a step does is the caller's (`churn`); the cluster state keeps this control so that
//! clearing the faults stops the job.
//!
//! Layer: leaf (imports no other module of this crate).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Run {
    stop: Arc<AtomicBool>,
    spec: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start, stop and observe churn.
#[derive(Default)]
pub(crate) struct ChurnControl {
    run: Mutex<Option<Run>>,
    steps: Arc<AtomicU64>,
    running: Arc<(Mutex<bool>, Condvar)>,
}

impl ChurnControl {
    /// Stop the running job, if any, and wait for its current step to end.
    pub(crate) fn stop(&self) {
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut run) = run {
            run.stop.store(true, Ordering::SeqCst);
            if let Some(t) = run.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Steps done by the current or last job.
    pub(crate) fn steps_done(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// The SPEC of the running job.
    pub(crate) fn running_spec(&self) -> Option<String> {
        let (lock, _) = &*self.running;
        if !*lock.lock().unwrap_or_else(|e| e.into_inner()) {
            return None;
        }
        self.run.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|r| r.spec.clone())
    }

    /// Block until no job runs.
    pub(crate) fn wait(&self) {
        let (lock, cvar) = &*self.running;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *running {
            running = cvar.wait(running).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Start a job of `steps` steps, `interval_ms` apart, replacing a running one. `spec`
    /// is what [`ChurnControl::running_spec`] reports. `make_step` runs on the job's thread,
    /// once the job it replaces has stopped, and returns the step: one change, `false` when
    /// there is nothing to change.
    pub(crate) fn start<F, S>(&self, spec: String, steps: u64, interval_ms: u64, make_step: F)
    where
        F: FnOnce() -> S + Send + 'static,
        S: FnMut() -> io::Result<bool>,
    {
        self.stop();
        let stop = Arc::new(AtomicBool::new(false));
        self.steps.store(0, Ordering::SeqCst);
        {
            let (lock, _) = &*self.running;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
        let stop2 = stop.clone();
        let (counter, running) = (self.steps.clone(), self.running.clone());
        let thread = std::thread::Builder::new().name("fb-devcluster-churn".into()).spawn(move || {
            let mut step = make_step();
            for _ in 0..steps {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                match step() {
                    Ok(true) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(false) => break,
                    Err(e) => {
                        eprintln!("fb-devcluster: churn stopped: {e}");
                        break;
                    }
                }
                if interval_ms > 0 {
                    std::thread::sleep(Duration::from_millis(interval_ms));
                }
            }
            let (lock, cvar) = &*running;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = false;
            cvar.notify_all();
        });
        match thread {
            Ok(t) => {
                *self.run.lock().unwrap_or_else(|e| e.into_inner()) = Some(Run { stop, spec, thread: Some(t) });
            }
            Err(e) => {
                eprintln!("fb-devcluster: cannot start churn: {e}");
                let (lock, cvar) = &*self.running;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = false;
                cvar.notify_all();
            }
        }
    }
}
