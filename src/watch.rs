//! `cronbyte watch [NAME...]`: the running daemon's syncs as they happen. On a
//! terminal, a progress bar per running sync (records, bytes, rate, time run,
//! time left against the connection's usual duration) redrawn in place under
//! a line of the next syncs due, with starts, ends and failures printed above;
//! piped, the same news as plain lines. Asks `GET /api/v1/connections` every
//! `--interval`; Ctrl-C ends it cleanly.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde::Deserialize;

use crate::remote::{Remote, RemoteError};
use crate::units;

/// Below this many columns, bars are left out and each sync is one line of text.
const NARROW: u16 = 70;

/// Piped, a running sync's progress is printed at most this often.
const PLAIN_PROGRESS_EVERY: chrono::Duration = chrono::Duration::seconds(10);

/// How many of the next syncs due the header names.
const NEXT_SHOWN: usize = 3;

/// A connection as `GET /api/v1/connections` gives it, what `watch` reads of it.
#[derive(Clone, Debug, Deserialize)]
pub struct Connection {
    pub name: String,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_run: Option<LastRun>,
    #[serde(default)]
    pub running: Option<Live>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct LastRun {
    pub id: i64,
    pub status: String,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub records_synced: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Live {
    pub run_id: i64,
    pub connection: String,
    #[serde(default)]
    pub records: Option<u64>,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub records_per_second: Option<f64>,
    pub elapsed_seconds: i64,
    #[serde(default)]
    pub usual_seconds: Option<i64>,
    #[serde(default)]
    pub estimated_seconds_left: Option<i64>,
    #[serde(default)]
    pub overdue: bool,
}

#[derive(Deserialize)]
struct Listing {
    connections: Vec<Connection>,
}

/// Something worth a line of its own.
#[derive(Clone, Debug, PartialEq)]
pub enum News {
    Started { connection: String, run_id: i64 },
    Ended { connection: String, run: LastRun },
}

impl News {
    /// The line it is printed as.
    pub fn line(&self) -> String {
        match self {
            News::Started { connection, run_id } => format!("{connection}: run {run_id} started"),
            News::Ended { connection, run } => {
                let took = match (run.started_at, run.finished_at) {
                    (Some(a), Some(b)) => format!(" in {}", units::duration((b - a).num_seconds())),
                    _ => String::new(),
                };
                let records = run
                    .records_synced
                    .map(|r| format!(", {} records", units::count(r)))
                    .unwrap_or_default();
                match &run.error {
                    Some(error) if run.status != "succeeded" => format!(
                        "{connection}: run {} {}{took}: {error}",
                        run.id,
                        run.status.to_uppercase()
                    ),
                    _ => format!("{connection}: run {} {}{took}{records}", run.id, run.status),
                }
            }
        }
    }
}

/// What changed between two looks: syncs that started, runs that ended.
pub fn news(before: &[Connection], now: &[Connection]) -> Vec<News> {
    let before: HashMap<&str, &Connection> = before.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = Vec::new();
    for c in now {
        let Some(was) = before.get(c.name.as_str()) else {
            continue;
        };
        if let Some(live) = &c.running
            && was.running.as_ref().map(|l| l.run_id) != Some(live.run_id)
        {
            out.push(News::Started {
                connection: c.name.clone(),
                run_id: live.run_id,
            });
        }
        if let Some(run) = &c.last_run
            && run.finished_at.is_some()
            && was.last_run.as_ref().map(|r| (r.id, &r.status)) != Some((run.id, &run.status))
        {
            out.push(News::Ended {
                connection: c.name.clone(),
                run: run.clone(),
            });
        }
    }
    out
}

/// A running sync's numbers in one line: records, bytes, rate, time run, time left.
pub fn progress_text(live: &Live) -> String {
    let left = if live.overdue {
        format!(
            "longer than usual ({})",
            live.usual_seconds.map_or("-".into(), units::duration)
        )
    } else {
        live.estimated_seconds_left
            .map_or("no estimate".into(), |s| {
                format!("~{} left", units::duration(s))
            })
    };
    format!(
        "{} rec · {} · {} · {} · {left}",
        live.records.map_or("-".into(), units::count),
        live.bytes.map_or("-".into(), units::bytes),
        live.records_per_second
            .map_or("-/s".into(), |r| units::per_second(r, units::count)),
        units::duration(live.elapsed_seconds),
    )
}

/// The next syncs due among `connections`, soonest first.
pub fn next_due(connections: &[Connection], now: DateTime<Utc>) -> String {
    let mut due: Vec<(&str, DateTime<Utc>)> = connections
        .iter()
        .filter(|c| !c.paused)
        .filter_map(|c| Some((c.name.as_str(), c.next_run?)))
        .collect();
    due.sort_by_key(|(_, at)| *at);
    if due.is_empty() {
        return "next: nothing scheduled".into();
    }
    let shown: Vec<String> = due
        .iter()
        .take(NEXT_SHOWN)
        .map(|(name, at)| format!("{name} in {}", units::duration((*at - now).num_seconds())))
        .collect();
    format!("next: {}", shown.join(", "))
}

/// Keeps only the connections `names` asks for (all, when empty); an unknown
/// name is an error naming it, with the closest known one.
fn chosen(all: Vec<Connection>, names: &[String]) -> Result<Vec<Connection>, String> {
    if names.is_empty() {
        return Ok(all);
    }
    for name in names {
        if !all.iter().any(|c| &c.name == name) {
            let hint = crate::config::closest(name, all.iter().map(|c| c.name.as_str()))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return Err(format!("the daemon has no connection named `{name}`{hint}"));
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| names.contains(&c.name))
        .collect())
}

async fn look(remote: &Remote, names: &[String]) -> Result<Vec<Connection>, WatchError> {
    let answer = remote.call(Method::GET, "/api/v1/connections").await?;
    let listing: Listing =
        serde_json::from_value(answer).map_err(|e| RemoteError::Decode(e.to_string()))?;
    chosen(listing.connections, names).map_err(WatchError::Unknown)
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    Unknown(String),
}

/// Where the news and the progress go.
trait Screen {
    fn show(&mut self, connections: &[Connection], news: &[News], now: DateTime<Utc>);
    fn trouble(&mut self, message: &str);
    fn close(&mut self);
}

/// Bars redrawn in place, on a terminal.
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    bars: BTreeMap<i64, ProgressBar>,
    narrow: bool,
}

impl Bars {
    fn new() -> Self {
        let width = console::Term::stdout().size().1;
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(250));
        Self {
            multi,
            header,
            bars: BTreeMap::new(),
            narrow: width < NARROW,
        }
    }

    fn style(&self, known_length: bool) -> ProgressStyle {
        let template = match (self.narrow, known_length) {
            (true, _) => "{prefix:.bold} {wide_msg}",
            (false, true) => "{prefix:.bold} [{bar:24.cyan/blue}] {percent:>3}% {wide_msg}",
            (false, false) => "{prefix:.bold} {spinner} {wide_msg}",
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

impl Screen for Bars {
    fn show(&mut self, connections: &[Connection], news: &[News], now: DateTime<Utc>) {
        for item in news {
            let _ = self.multi.println(format!(
                "{} {}",
                Local::now().format("%H:%M:%S"),
                item.line()
            ));
        }
        let running: Vec<&Live> = connections
            .iter()
            .filter_map(|c| c.running.as_ref())
            .collect();
        self.header.set_message(format!(
            "{} running · {}",
            running.len(),
            next_due(connections, now)
        ));
        let live_ids: Vec<i64> = running.iter().map(|l| l.run_id).collect();
        let gone: Vec<i64> = self
            .bars
            .keys()
            .filter(|id| !live_ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(bar) = self.bars.remove(&id) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        for live in running {
            let usual = live.usual_seconds.filter(|u| *u > 0);
            let bar = match self.bars.get(&live.run_id) {
                Some(bar) => bar.clone(),
                None => {
                    let bar = self.multi.add(ProgressBar::new(1));
                    bar.set_prefix(format!("{} #{}", live.connection, live.run_id));
                    if usual.is_none() {
                        bar.enable_steady_tick(Duration::from_millis(250));
                    }
                    self.bars.insert(live.run_id, bar.clone());
                    bar
                }
            };
            bar.set_style(self.style(usual.is_some()));
            if let Some(usual) = usual {
                // The bar is time against the usual duration; past it, it stays full.
                let usual = u64::try_from(usual).unwrap_or(1);
                bar.set_length(usual);
                bar.set_position(u64::try_from(live.elapsed_seconds).unwrap_or(0).min(usual));
            }
            bar.set_message(progress_text(live));
        }
    }

    fn trouble(&mut self, message: &str) {
        self.header.set_message(message.to_owned());
    }

    fn close(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Plain lines, when the output is not a terminal.
struct Lines<W: Write> {
    out: W,
    /// When each running sync's progress was last printed.
    printed: HashMap<i64, DateTime<Utc>>,
    /// The last trouble printed, so an outage is one line, not one per look.
    trouble: Option<String>,
}

impl<W: Write> Screen for Lines<W> {
    fn show(&mut self, connections: &[Connection], news: &[News], now: DateTime<Utc>) {
        self.trouble = None;
        for item in news {
            let _ = writeln!(self.out, "{} {}", now.format("%H:%M:%SZ"), item.line());
        }
        let mut running = Vec::new();
        for live in connections.iter().filter_map(|c| c.running.as_ref()) {
            running.push(live.run_id);
            let due = self
                .printed
                .get(&live.run_id)
                .is_none_or(|at| now - *at >= PLAIN_PROGRESS_EVERY);
            if due {
                let _ = writeln!(
                    self.out,
                    "{} {} #{}: {}",
                    now.format("%H:%M:%SZ"),
                    live.connection,
                    live.run_id,
                    progress_text(live)
                );
                self.printed.insert(live.run_id, now);
            }
        }
        self.printed.retain(|id, _| running.contains(id));
        let _ = self.out.flush();
    }

    fn trouble(&mut self, message: &str) {
        if self.trouble.as_deref() != Some(message) {
            let _ = writeln!(self.out, "{message}");
            let _ = self.out.flush();
            self.trouble = Some(message.to_owned());
        }
    }

    fn close(&mut self) {
        let _ = self.out.flush();
    }
}

/// Watches until Ctrl-C (or SIGTERM). The first look must answer; later
/// failures are shown and the watch goes on.
pub async fn run(
    remote: &Remote,
    names: &[String],
    every: Duration,
) -> Result<ExitCode, WatchError> {
    let mut previous = look(remote, names).await?;
    let mut screen: Box<dyn Screen> = if std::io::stdout().is_terminal() {
        Box::new(Bars::new())
    } else {
        let mut lines = Lines {
            out: std::io::stdout(),
            printed: HashMap::new(),
            trouble: None,
        };
        let _ = writeln!(lines.out, "{}", next_due(&previous, Utc::now()));
        Box::new(lines)
    };
    screen.show(&previous, &[], Utc::now());
    let stop = tokio_util::sync::CancellationToken::new();
    crate::commands::cancel_on_signals(stop.clone());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        match look(remote, names).await {
            Ok(now) => {
                let happened = news(&previous, &now);
                screen.show(&now, &happened, Utc::now());
                previous = now;
            }
            Err(e) => screen.trouble(&format!(
                "{} the daemon did not answer: {e}",
                Utc::now().format("%H:%M:%SZ")
            )),
        }
    }
    screen.close();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn live(run_id: i64, records: u64, elapsed: i64) -> Live {
        Live {
            run_id,
            connection: "orders".into(),
            records: Some(records),
            bytes: Some(records * 100),
            records_per_second: Some(1_000.0),
            elapsed_seconds: elapsed,
            usual_seconds: Some(600),
            estimated_seconds_left: Some(600 - elapsed),
            overdue: false,
        }
    }

    fn connection(running: Option<Live>, last: Option<LastRun>) -> Connection {
        Connection {
            name: "orders".into(),
            paused: false,
            next_run: Some(at(3_600)),
            last_run: last,
            running,
        }
    }

    fn ended(id: i64, status: &str, error: Option<&str>) -> LastRun {
        LastRun {
            id,
            status: status.into(),
            started_at: Some(at(0)),
            finished_at: Some(at(185)),
            records_synced: Some(12_345),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_start_and_an_end_are_news_once_and_a_failure_carries_its_reason() {
        let idle = connection(None, Some(ended(1, "succeeded", None)));
        let running = connection(Some(live(2, 10, 5)), Some(ended(1, "succeeded", None)));
        assert_eq!(
            news(std::slice::from_ref(&idle), std::slice::from_ref(&running)),
            [News::Started {
                connection: "orders".into(),
                run_id: 2
            }]
        );
        assert!(
            news(
                std::slice::from_ref(&running),
                std::slice::from_ref(&running)
            )
            .is_empty(),
            "nothing new"
        );
        let failed = connection(None, Some(ended(2, "failed", Some("disk full"))));
        let happened = news(&[running], &[failed]);
        assert_eq!(happened.len(), 1);
        assert_eq!(
            happened[0].line(),
            "orders: run 2 FAILED in 3m05s: disk full"
        );
        let ok = News::Ended {
            connection: "orders".into(),
            run: ended(3, "succeeded", None),
        };
        assert_eq!(ok.line(), "orders: run 3 succeeded in 3m05s, 12.3k records");
    }

    #[test]
    fn a_running_sync_reads_as_records_bytes_rate_time_run_and_time_left() {
        assert_eq!(
            progress_text(&live(2, 120_000, 120)),
            "120.0k rec · 11.4 MiB · 1.0k/s · 2m00s · ~8m00s left"
        );
        let mut late = live(2, 5, 900);
        late.overdue = true;
        assert!(progress_text(&late).ends_with("longer than usual (10m00s)"));
    }

    #[test]
    fn piped_output_is_plain_lines_with_progress_at_most_every_ten_seconds() {
        let mut lines = Lines {
            out: Vec::new(),
            printed: HashMap::new(),
            trouble: None,
        };
        let running = [connection(Some(live(2, 10, 5)), None)];
        lines.show(
            &running,
            &[News::Started {
                connection: "orders".into(),
                run_id: 2,
            }],
            at(0),
        );
        lines.show(&running, &[], at(4));
        lines.show(&running, &[], at(10));
        lines.trouble("08:00:00Z the daemon did not answer: refused");
        lines.trouble("08:00:00Z the daemon did not answer: refused");
        let text = String::from_utf8(lines.out).unwrap();
        let printed: Vec<&str> = text.lines().collect();
        assert_eq!(printed.len(), 4, "{text}");
        assert!(printed[0].ends_with("orders: run 2 started"));
        assert!(printed[1].contains("orders #2: 10 rec"));
        assert!(
            printed[2].contains("orders #2"),
            "ten seconds later: {text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "no terminal control in plain lines"
        );
    }

    #[test]
    fn the_next_syncs_due_skip_paused_connections_and_unknown_names_are_refused() {
        let mut paused = connection(None, None);
        paused.name = "paused".into();
        paused.paused = true;
        paused.next_run = Some(at(60));
        let all = vec![connection(None, None), paused];
        assert_eq!(next_due(&all, at(0)), "next: orders in 1h00m");
        let err = chosen(all.clone(), &["ordres".into()]).unwrap_err();
        assert_eq!(
            err,
            "the daemon has no connection named `ordres`; did you mean `orders`?"
        );
        assert_eq!(chosen(all, &["paused".into()]).unwrap().len(), 1);
    }
}
