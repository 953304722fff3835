//! Container logs as the kubelet serves them, read from the CRI log files containerd writes
//! (`<pods_dir>/<ns>_<name>_<uid>/<container>/<attempt>.log`, one `TIMESTAMP STREAM P|F MESSAGE`
//! line per chunk; `P` marks a chunk of a longer line, `F` its end).
//!
//! The pure part: [`parse_line`], [`LogOptions::from_query`], [`select`] (sinceSeconds/sinceTime,
//! then tailLines over whole lines) and [`render`]. The IO part: [`stream`] sends what an attempt's
//! file holds and, when following, polls the file for growth and moves on to the next attempt's
//! file once the container restarted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tug_k8s::pods::PodRef;

/// How often a followed file is checked for new lines (the kubelet waits on inotify).
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The pod's log directory name under the agent's `pods/` dir, as the kubelet names it:
/// `<namespace>_<name>_<uid>`.
pub fn pod_log_dir_name(pod: &PodRef) -> String {
    format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)
}

/// Which output of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime wrote it.
    pub time: Timestamp,
    pub stream: Stream,
    /// `P`: a chunk of a longer line, continued by the next entry.
    pub partial: bool,
    pub message: Vec<u8>,
}

/// Parses `2024-01-02T03:04:05.123456789Z stdout F hello` (without its newline).
pub fn parse_line(line: &[u8]) -> Result<LogLine, String> {
    let text = String::from_utf8_lossy(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("not a CRI log line: {text:?}"));
    };
    let time = std::str::from_utf8(time)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or_else(|| format!("bad timestamp in CRI log line {text:?}"))?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err(format!("bad stream in CRI log line {text:?}")),
    };
    // Tags may carry more flags after ':'; the first one is P or F.
    let partial = match tag.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(format!("bad tag in CRI log line {text:?}")),
    };
    Ok(LogLine { time, stream, partial, message: fields.next().unwrap_or_default().to_vec() })
}

/// The query of `GET /containerLogs/...` (the kubelet's PodLogOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since_seconds: Option<u64>,
    pub since_time: Option<Timestamp>,
    pub limit_bytes: Option<usize>,
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{name} must be a non-negative integer, not {value:?}"))
}

impl LogOptions {
    /// Reads `follow`, `previous`, `timestamps`, `tailLines`, `sinceSeconds`, `sinceTime`,
    /// `limitBytes` from a percent-decoded query.
    pub fn from_query(pairs: &[(String, String)]) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        for (name, value) in pairs {
            match name.as_str() {
                "follow" => options.follow = flag(value)?,
                "previous" => options.previous = flag(value)?,
                "timestamps" => options.timestamps = flag(value)?,
                // A negative tail means "everything", as the kubelet treats -1.
                "tailLines" if value.starts_with('-') => options.tail_lines = None,
                "tailLines" => options.tail_lines = Some(number("tailLines", value)?),
                "sinceSeconds" => options.since_seconds = Some(number("sinceSeconds", value)?),
                "sinceTime" => {
                    options.since_time =
                        Some(value.parse().map_err(|_| format!("sinceTime must be RFC 3339, not {value:?}"))?)
                }
                "limitBytes" => options.limit_bytes = Some(number("limitBytes", value)?),
                _ => {}
            }
        }
        Ok(options)
    }

    /// The earliest time a line may have to be shown.
    pub fn since(&self, now: Timestamp) -> Option<Timestamp> {
        let by_seconds = self
            .since_seconds
            .and_then(|s| now.checked_sub(jiff::SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX))).ok());
        by_seconds.max(self.since_time)
    }
}

/// The lines to show: those at or after `since`, then the last `tail` whole lines (a line
/// written in `P` chunks counts once).
pub fn select(lines: Vec<LogLine>, since: Option<Timestamp>, tail: Option<usize>) -> Vec<LogLine> {
    let recent: Vec<LogLine> = lines.into_iter().filter(|l| since.is_none_or(|s| l.time >= s)).collect();
    let Some(tail) = tail else { return recent };
    // Walk back over complete lines: an `F` entry ends a line, so the tail starts right after
    // the (tail+1)-th `F` from the end (a trailing unfinished line counts as one).
    let mut whole = 0;
    let mut start = recent.len();
    for (i, line) in recent.iter().enumerate().rev() {
        let ends_a_line = !line.partial || i + 1 == recent.len();
        if ends_a_line {
            if whole == tail {
                break;
            }
            whole += 1;
        }
        start = i;
    }
    recent.into_iter().skip(start).collect()
}

/// A line as the client reads it: the message (with its newline unless partial), prefixed by
/// the RFC 3339 timestamp when asked.
pub fn render(line: &LogLine, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.message.len() + 40);
    if timestamps {
        out.extend_from_slice(format!("{:.9} ", line.time).as_bytes());
    }
    out.extend_from_slice(&line.message);
    if !line.partial {
        out.push(b'\n');
    }
    out
}

/// Parses every complete line of `bytes`; returns them and how many bytes they used (a trailing
/// line without its newline is still being written). Unparsable lines are skipped.
pub fn parse_complete(bytes: &[u8]) -> (Vec<LogLine>, usize) {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else { return (Vec::new(), 0) };
    let lines = bytes[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| parse_line(l).map_err(|e| tracing::debug!(error = %e, "skipping log line")).ok())
        .collect();
    (lines, end)
}

/// The log file of attempt `attempt` in a container's log directory.
pub fn attempt_file(container_dir: &Path, attempt: u32) -> PathBuf {
    container_dir.join(format!("{attempt}.log"))
}

/// Where [`stream`] reads from.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// `<pods_dir>/<ns>_<name>_<uid>/<container>`.
    pub container_dir: PathBuf,
    pub attempt: u32,
}

/// Sends the selected lines of the source's file to `out`; when following, keeps sending new
/// lines (moving to the next attempt's file when it appears) until the pod's log directory
/// disappears or the receiver goes away.
pub async fn stream(source: LogSource, options: LogOptions, out: mpsc::Sender<Result<Bytes, std::io::Error>>) {
    if let Err(error) = send_logs(source, &options, &out).await {
        let _ = out.send(Err(error)).await;
    }
}

async fn send_logs(
    source: LogSource,
    options: &LogOptions,
    out: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), std::io::Error> {
    let mut budget = options.limit_bytes.unwrap_or(usize::MAX);
    let mut send = async |lines: Vec<LogLine>| -> bool {
        for line in lines {
            let mut bytes = render(&line, options.timestamps);
            bytes.truncate(budget);
            budget -= bytes.len();
            if bytes.is_empty() || out.send(Ok(Bytes::from(bytes))).await.is_err() {
                return false;
            }
        }
        true
    };
    let mut attempt = source.attempt;
    let mut path = attempt_file(&source.container_dir, attempt);
    let content = tokio::fs::read(&path).await?;
    let (lines, mut offset) = parse_complete(&content);
    if !send(select(lines, options.since(Timestamp::now()), options.tail_lines)).await || !options.follow {
        return Ok(());
    }
    let mut pending = Vec::new();
    loop {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(std::io::SeekFrom::Start(offset as u64)).await?;
        let mut grown = Vec::new();
        file.read_to_end(&mut grown).await?;
        offset += grown.len();
        pending.extend_from_slice(&grown);
        let (lines, used) = parse_complete(&pending);
        pending.drain(..used);
        if !send(lines).await {
            return Ok(());
        }
        if grown.is_empty() {
            let next = attempt_file(&source.container_dir, attempt + 1);
            if tokio::fs::try_exists(&next).await.unwrap_or(false) {
                // The container restarted: what the old file still had was read above.
                (attempt, path, offset) = (attempt + 1, next, 0);
                pending.clear();
                continue;
            }
            if !tokio::fs::try_exists(&source.container_dir).await.unwrap_or(false) || out.is_closed() {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, partial: bool, message: &str) -> LogLine {
        LogLine { time: time.parse().expect("time"), stream: Stream::Stdout, partial, message: message.into() }
    }

    /// What a line parses into (stream, partial, message), or what the error mentions.
    type Parsed<'a> = Result<(Stream, bool, &'a str), &'a str>;

    #[test]
    fn cri_lines_parse() {
        let cases: [(&str, Parsed); 6] = [
            ("2024-01-02T03:04:05.123456789Z stdout F hello world", Ok((Stream::Stdout, false, "hello world"))),
            ("2024-01-02T03:04:05+02:00 stderr P part", Ok((Stream::Stderr, true, "part"))),
            ("2024-01-02T03:04:05Z stdout F", Ok((Stream::Stdout, false, ""))),
            ("2024-01-02T03:04:05Z stdout F:x a", Ok((Stream::Stdout, false, "a"))),
            ("yesterday stdout F x", Err("bad timestamp")),
            ("2024-01-02T03:04:05Z stdin F x", Err("bad stream")),
        ];
        for (input, want) in cases {
            let got = parse_line(input.as_bytes());
            match (got, want) {
                (Ok(l), Ok((stream, partial, message))) => {
                    assert_eq!((l.stream, l.partial, l.message.as_slice()), (stream, partial, message.as_bytes()))
                }
                (Err(e), Err(want)) => assert!(e.contains(want), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
        let offset = parse_line(b"2024-01-02T05:04:05+02:00 stdout F x").expect("parses");
        assert_eq!(offset.time, "2024-01-02T03:04:05Z".parse::<Timestamp>().expect("time"));
    }

    #[test]
    fn incomplete_trailing_lines_wait_for_their_newline() {
        let text = b"2024-01-02T03:04:05Z stdout F a\n2024-01-02T03:04:06Z stdout F b\n2024-01-02T03:04:0";
        let (lines, used) = parse_complete(text);
        assert_eq!(lines.iter().map(|l| l.message.as_slice()).collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(&text[used..], b"2024-01-02T03:04:0");
        assert_eq!(parse_complete(b"no newline yet"), (vec![], 0));
    }

    #[test]
    fn tail_counts_whole_lines_and_since_drops_older_ones() {
        let lines = vec![
            line("2024-01-01T00:00:01Z", false, "one"),
            line("2024-01-01T00:00:02Z", true, "tw"),
            line("2024-01-01T00:00:02Z", false, "o"),
            line("2024-01-01T00:00:03Z", false, "three"),
        ];
        let messages = |selected: Vec<LogLine>| {
            selected.iter().map(|l| String::from_utf8_lossy(&render(l, false)).into_owned()).collect::<String>()
        };
        let since = |t: &str| Some(t.parse::<Timestamp>().expect("time"));
        let cases = [
            (None, None, "one\ntwo\nthree\n"),
            (None, Some(0), ""),
            (None, Some(1), "three\n"),
            (None, Some(2), "two\nthree\n"),
            (None, Some(10), "one\ntwo\nthree\n"),
            (since("2024-01-01T00:00:02Z"), None, "two\nthree\n"),
            (since("2024-01-01T00:00:02Z"), Some(1), "three\n"),
            (since("2024-01-01T00:00:04Z"), None, ""),
        ];
        for (since, tail, want) in cases {
            assert_eq!(messages(select(lines.clone(), since, tail)), want, "since {since:?} tail {tail:?}");
        }
    }

    #[test]
    fn timestamps_prefix_rfc3339_with_nanoseconds() {
        let rendered = render(&line("2024-01-02T03:04:05.5Z", false, "hi"), true);
        assert_eq!(String::from_utf8_lossy(&rendered), "2024-01-02T03:04:05.500000000Z hi\n");
        assert_eq!(render(&line("2024-01-02T03:04:05Z", true, "part"), false), b"part");
    }

    #[test]
    fn query_options_parse_like_the_kubelet() {
        let pairs = |q: &[(&str, &str)]| q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let options = LogOptions::from_query(&pairs(&[
            ("follow", "true"),
            ("previous", "false"),
            ("timestamps", "1"),
            ("tailLines", "5"),
            ("sinceSeconds", "10"),
        ]))
        .expect("valid");
        assert_eq!(
            options,
            LogOptions {
                follow: true,
                timestamps: true,
                tail_lines: Some(5),
                since_seconds: Some(10),
                ..LogOptions::default()
            }
        );
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().expect("time");
        assert_eq!(options.since(now), Some("2024-01-01T00:00:50Z".parse().expect("time")));
        assert_eq!(LogOptions::from_query(&pairs(&[("tailLines", "-1")])).expect("valid").tail_lines, None);
        assert!(LogOptions::from_query(&pairs(&[("tailLines", "x")])).is_err());
        assert!(LogOptions::from_query(&pairs(&[("follow", "maybe")])).is_err());
    }
}
