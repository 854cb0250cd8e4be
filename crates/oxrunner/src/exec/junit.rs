//! The failed tests of a job's `artifacts:reports:junit`, for the report `oxrunner exec` prints at the end.
//!
//! The report is read from the artifact the runner stored (`.oxrunner/artifacts/<job>/junit/`, gzip as GitLab
//! keeps it), never from the job's directory, and the work is bounded: at most `MAX_XML_BYTES` of XML per job
//! are read and `MAX_FAILURES` failures kept, each message cut to one short line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// How much XML of one job is parsed at most (the decompressed size: a small gzip can hold a lot).
const MAX_XML_BYTES: u64 = 32 * 1024 * 1024;
/// Failures listed per job; the count covers them all.
pub const MAX_FAILURES: usize = 10;
const MAX_MESSAGE_CHARS: usize = 240;

#[derive(Debug, PartialEq, Eq)]
pub struct TestFailure {
    /// `classname.name`, or `name` alone.
    pub name: String,
    /// The `message` attribute, else the first line of the element's text.
    pub message: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub failures: Vec<TestFailure>,
    /// All `<failure>` and `<error>` elements seen (more than `failures` holds when there are many).
    pub failed: usize,
    /// Why the rest of a report could not be read, if it could not.
    pub problem: Option<String>,
}

/// Reads every JUnit report file in `dir` (the job's stored junit artifact).
pub fn read_dir(dir: &Path) -> Report {
    let mut report = Report::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return report;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut budget = MAX_XML_BYTES;
    for path in files {
        let read = File::open(&path).and_then(|f| {
            let mut head = [0u8; 2];
            let n = (&f).take(2).read(&mut head)?;
            let f = File::open(&path)?;
            Ok((n == 2 && head == [0x1f, 0x8b], f))
        });
        let (gzip, file) = match read {
            Ok(r) => r,
            Err(e) => {
                report.problem = Some(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(file)
        };
        let mut limited = BufReader::new(reader.take(budget));
        parse_into(&mut limited, &mut report);
        budget = limited.get_ref().limit();
        if budget == 0 {
            report.problem.get_or_insert_with(|| {
                format!(
                    "only the first {} MiB of the report were read",
                    MAX_XML_BYTES >> 20
                )
            });
            break;
        }
    }
    report
}

/// Parses JUnit XML (several documents one after the other are fine: GitLab's gzip joins the files).
#[cfg(test)]
fn parse(xml: &[u8]) -> Report {
    let mut report = Report::default();
    parse_into(&mut BufReader::new(xml), &mut report);
    report
}

fn attr(e: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.chars().count() > MAX_MESSAGE_CHARS {
        let mut cut: String = line.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        line.to_string()
    }
}

/// The test case being read and, inside a `<failure>` without a message, its text so far.
#[derive(Default)]
struct Current {
    case: Option<String>,
    text: Option<String>,
}

fn parse_into(input: &mut impl BufRead, report: &mut Report) {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut cur = Current::default();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                report.problem = Some(format!(
                    "the report is not valid XML at byte {}: {e}",
                    reader.buffer_position()
                ));
                return;
            }
        };
        match event {
            Event::Eof => return,
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"testcase" => {
                let name = attr(&e, b"name").unwrap_or_default();
                cur.case = Some(match attr(&e, b"classname").filter(|c| !c.is_empty()) {
                    Some(class) => format!("{class}.{name}"),
                    None => name,
                });
            }
            Event::End(e) if e.local_name().as_ref() == b"testcase" => cur.case = None,
            Event::Start(ref e) | Event::Empty(ref e)
                if matches!(e.local_name().as_ref(), b"failure" | b"error") =>
            {
                let is_start = matches!(event, Event::Start(_));
                report.failed += 1;
                let message = attr(e, b"message")
                    .map(|m| one_line(&m))
                    .filter(|m| !m.is_empty());
                let name = cur.case.clone().unwrap_or_else(|| "(outside a testcase)".into());
                match message {
                    None if is_start => cur.text = Some(String::new()),
                    message => push(report, name, message.unwrap_or_default()),
                }
            }
            Event::Text(t) => {
                if let (Some(text), Ok(s)) = (cur.text.as_mut(), t.decode()) {
                    append(text, &s);
                }
            }
            Event::CData(t) => {
                if let (Some(text), Ok(s)) = (cur.text.as_mut(), t.decode()) {
                    append(text, &s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(text) = cur.text.as_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => r
                            .decode()
                            .ok()
                            .and_then(|n| quick_xml::escape::resolve_xml_entity(&n))
                            .unwrap_or_default()
                            .to_string(),
                    };
                    append(text, &resolved);
                }
            }
            Event::End(e) if matches!(e.local_name().as_ref(), b"failure" | b"error") => {
                if let Some(text) = cur.text.take() {
                    let name = cur.case.clone().unwrap_or_else(|| "(outside a testcase)".into());
                    push(report, name, one_line(&text));
                }
            }
            _ => {}
        }
        buf.clear();
    }
}

/// Keeps the text of a failure element bounded: only its first line is shown anyway.
fn append(text: &mut String, more: &str) {
    if text.len() < 4 * MAX_MESSAGE_CHARS {
        text.push_str(more);
    }
}

fn push(report: &mut Report, name: String, message: String) {
    if report.failures.len() < MAX_FAILURES {
        report.failures.push(TestFailure { name, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_errors_with_their_messages() {
        let xml = br#"<?xml version="1.0"?>
<testsuites><testsuite name="s">
  <testcase classname="math.Add" name="adds"/>
  <testcase classname="math.Add" name="overflows"><failure message="expected 3 &amp; got 4" type="assert">trace</failure></testcase>
  <testcase name="io"><error>
     disk &lt;full&gt;
     at line 2</error></testcase>
  <testcase name="cdata"><failure><![CDATA[boom in cdata]]></failure></testcase>
</testsuite></testsuites>
<?xml version="1.0"?><testsuite><testcase name="second-file"><failure message="again"/></testcase></testsuite>"#;
        let r = parse(xml);
        assert_eq!(r.problem, None);
        assert_eq!(r.failed, 4);
        let got: Vec<(&str, &str)> = r
            .failures
            .iter()
            .map(|f| (f.name.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("math.Add.overflows", "expected 3 & got 4"),
                ("io", "disk <full>"),
                ("cdata", "boom in cdata"),
                ("second-file", "again"),
            ]
        );
    }

    #[test]
    fn bounded_and_broken_reports() {
        let mut xml = String::from("<testsuite>");
        for i in 0..50 {
            xml.push_str(&format!(
                "<testcase name=\"t{i}\"><failure message=\"{}\"/></testcase>",
                "m".repeat(1000)
            ));
        }
        xml.push_str("</testsuite>");
        let r = parse(xml.as_bytes());
        assert_eq!(r.failed, 50);
        assert_eq!(r.failures.len(), MAX_FAILURES);
        assert!(r.failures[0].message.chars().count() <= MAX_MESSAGE_CHARS);

        let r = parse(b"<testsuite><testcase name=\"a\"><failure message=\"x\"/></testcase></oops>");
        assert_eq!(r.failures.len(), 1);
        assert!(r.problem.is_some_and(|p| p.contains("not valid XML")));
    }
}
