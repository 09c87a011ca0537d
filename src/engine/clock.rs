//! The engine's idea of now. In production it is the wall clock; tests of
//! whole days (DST changes) run an accelerated clock instead, so a day passes
//! in seconds while the engine, the store and the emulator run for real.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Starts at `origin` when created and runs `factor` times faster than real time.
    Accelerated {
        origin: DateTime<Utc>,
        started: tokio::time::Instant,
        factor: u32,
    },
}

impl Clock {
    /// A clock that reads `origin` now and runs `factor` times faster than real time.
    pub fn accelerated(origin: DateTime<Utc>, factor: u32) -> Self {
        Self::Accelerated {
            origin,
            started: tokio::time::Instant::now(),
            factor: factor.max(1),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Accelerated {
                origin,
                started,
                factor,
            } => {
                let real = started.elapsed() * *factor;
                *origin + chrono::Duration::from_std(real).unwrap_or_default()
            }
        }
    }

    /// Sleeps until `at` by this clock, but at most `cap` of real time, so the
    /// caller looks at the clock again after a suspend or a wall-clock jump.
    pub async fn sleep_until(&self, at: DateTime<Utc>, cap: Duration) {
        let ahead = (at - self.now()).to_std().unwrap_or_default();
        let real = match self {
            Self::System => ahead,
            Self::Accelerated { factor, .. } => ahead / *factor,
        };
        tokio::time::sleep(real.min(cap)).await;
    }

    /// Sleeps until `at` by this clock, however long that is.
    pub async fn sleep_until_fully(&self, at: DateTime<Utc>) {
        while self.now() < at {
            self.sleep_until(at, Duration::from_secs(60)).await;
        }
    }
}
