//! `rehearse --report FILE`: the rehearsal as one self-contained HTML
//! page. Latency over time is an SVG chart drawn by plotters, the
//! migrations' phases shaded and each statement marked where it ran; the
//! verdict, the phases, the statements and the lock waits follow as
//! tables. Nothing is fetched (no script, font or stylesheet from
//! elsewhere), so the file can be attached to a ticket and still open the
//! same years later.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::json::{PhaseJson, Rehearsed, RehearsedStatement, WindowJson};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 380;
/// The height of the strip along the plot's top in which each statement's
/// run is a bar.
const LANE: i32 = 8;

/// The page.
pub(crate) fn html(r: &Rehearsed, passed: bool) -> String {
    let mut page = String::new();
    let verdict = if passed { "passed" } else { "failed" };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>waymark rehearsal on {scratch}: {verdict}</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>Rehearsal on <code>{scratch}</code>: <span class=\"{verdict}\">{verdict}</span></h1>\n\
         <p>{clients} client(s){rate}; {migrations} migration(s), {statements} statement(s).</p>\n",
        scratch = escape(&r.scratch),
        clients = r.clients,
        rate = r.rate.map(|r| format!(" at {r} transaction(s)/s")).unwrap_or_default(),
        migrations = r.migrations.len(),
        statements = r.statements.len(),
    );
    page.push_str("<figure>");
    page.push_str(&chart(r));
    page.push_str(
        "<figcaption>Latency of the workload's transactions over time (log scale): p50, p99 and the longest in \
         each slice. Shaded: each migration, from its first statement to its end. Each vertical mark is a \
         statement, at when it started, with a bar along the top as long as it ran; red if a workload \
         session waited behind it. Hover a mark for the statement.</figcaption></figure>\n",
    );
    if let Some(failure) = &r.failure {
        let _ = writeln!(
            page,
            "<p class=\"failed\">Migration failed: {}</p>",
            escape(&failure.message)
        );
    }
    if let Some(why) = &r.lock_waits_not_sampled {
        let _ = writeln!(page, "<p>Lock waits were not measured: {}</p>", escape(why));
    }
    verdict_table(&mut page, r);
    phase_table(&mut page, &r.phases);
    statement_table(&mut page, &r.statements);
    wait_table(&mut page, &r.phases);
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;\
vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}.passed{color:#1a7f37}\
.failed{color:#c62828;font-weight:bold}code{font-size:.9em}figure{margin:0}svg{max-width:100%;height:auto}";

/// What the chart shows, in seconds and milliseconds.
fn chart(r: &Rehearsed) -> String {
    let end_s = r
        .phases
        .iter()
        .map(|p| (p.start_ms + p.duration_ms) / 1000.0)
        .fold(1.0_f64, f64::max);
    let latencies = r
        .timeline
        .iter()
        .flat_map(|w| [w.p50_ms, w.p99_ms, w.max_ms])
        .flatten()
        .filter(|ms| *ms > 0.0);
    let (low, high) = latencies.fold((f64::MAX, 0.0_f64), |(lo, hi), ms| (lo.min(ms), hi.max(ms)));
    let (low, high) = if high > 0.0 {
        (low / 1.5, high * 1.5)
    } else {
        (0.1, 10.0)
    };
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, r, end_s, low..high).map_err(|e| e.to_string())
    };
    // A string cannot fail to take what the backend writes, so this is a
    // bug in the ranges: the page says so rather than showing half a chart.
    let marks = match drawn {
        Ok(marks) => marks,
        Err(e) => return format!("<p class=\"failed\">The chart could not be drawn: {}</p>", escape(&e)),
    };
    // The marks go over plotters' drawing as elements of their own, with
    // the statement as their title: a reader hovers one to see it.
    let mut overlay = String::from("<g class=\"markers\">");
    for m in marks {
        let _ = write!(
            overlay,
            "<g class=\"marker{waited}\" data-start-ms=\"{start}\"><line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" \
             y2=\"{bottom}\"/><rect x=\"{x}\" y=\"{top}\" width=\"{w}\" height=\"{LANE}\"/><title>{title}</title></g>",
            waited = if m.statement.waits > 0 { " waited" } else { "" },
            start = m.statement.start_ms,
            x = m.x,
            top = m.top,
            bottom = m.bottom,
            w = m.width.max(2),
            title = escape(&mark_title(m.statement)),
        );
    }
    overlay.push_str(
        "</g><style>.marker line{stroke:#5b3fa8;stroke-width:1.5;stroke-dasharray:4 3}.marker rect{fill:#5b3fa8}\
         .marker.waited line{stroke:#c62828}.marker.waited rect{fill:#c62828}.marker:hover line{stroke-width:3}\
         </style>",
    );
    match svg.rfind("</svg>") {
        Some(at) => svg.insert_str(at, &overlay),
        None => svg.push_str(&overlay),
    }
    svg
}

/// A statement's mark, in the chart's pixels.
struct Mark<'a> {
    statement: &'a RehearsedStatement,
    x: i32,
    width: i32,
    top: i32,
    bottom: i32,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Which figure of a slice a series plots.
type Pick = fn(&WindowJson) -> Option<f64>;

fn draw<'r>(
    root: &Area<'_>,
    r: &'r Rehearsed,
    end_s: f64,
    latency: std::ops::Range<f64>,
) -> Result<Vec<Mark<'r>>, Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, latency.clone().log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds from the start of the load")
        .y_desc("latency, ms")
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    // Each migration's phase, shaded, its label at the top.
    for (i, p) in r.phases.iter().filter(|p| p.kind == "migration").enumerate() {
        let (from, to) = (p.start_ms / 1000.0, (p.start_ms + p.duration_ms) / 1000.0);
        let shade = if i % 2 == 0 {
            RGBColor(255, 243, 205)
        } else {
            RGBColor(224, 236, 255)
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from, latency.start), (to, latency.end)],
            shade.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            p.name.clone(),
            (from, latency.end / 1.8),
            ("sans-serif", 12).into_font(),
        )))?;
    }
    let at = |ms: f64| ms / 1000.0;
    let series: [(&str, RGBColor, u32, Pick); 3] = [
        ("p50", RGBColor(31, 119, 180), 2, |w| w.p50_ms),
        ("p99", RGBColor(255, 127, 14), 2, |w| w.p99_ms),
        ("max", RGBColor(150, 150, 150), 1, |w| w.max_ms),
    ];
    for (name, color, width, value) in series {
        let points: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .filter_map(|w| value(w).filter(|ms| *ms > 0.0).map(|ms| (at(w.start_ms), ms)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    // Slices in which transactions failed, as a red strip along the bottom.
    let slice = r
        .timeline
        .windows(2)
        .next()
        .map_or(1.0, |w| at(w[1].start_ms - w[0].start_ms));
    chart.draw_series(r.timeline.iter().filter(|w| w.failed > 0).map(|w| {
        Rectangle::new(
            [
                (at(w.start_ms), latency.start),
                (at(w.start_ms) + slice, latency.start * 1.4),
            ],
            RGBColor(198, 40, 40).filled(),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    let (_, rows) = chart.plotting_area().get_pixel_range();
    let marks = r
        .statements
        .iter()
        .map(|s| {
            let (x, _) = chart.backend_coord(&(at(s.start_ms), latency.start));
            let (x_end, _) = chart.backend_coord(&(at(s.start_ms + s.duration_ms), latency.start));
            Mark {
                statement: s,
                x,
                width: x_end - x,
                top: rows.start,
                bottom: rows.end,
            }
        })
        .collect();
    root.present()?;
    Ok(marks)
}

fn mark_title(s: &RehearsedStatement) -> String {
    let mut title = format!(
        "{}: {} ({:.1} ms from {:.2} s)",
        s.migration,
        s.sql,
        s.duration_ms,
        s.start_ms / 1000.0
    );
    if !s.locks.is_empty() {
        let _ = write!(title, "; took {}", s.locks.join(", "));
    }
    if s.waits > 0 {
        let _ = write!(
            title,
            "; {} workload wait(s) behind it, longest {:.0} ms",
            s.waits,
            s.longest_wait_ms.unwrap_or(0.0)
        );
    }
    if let Some(e) = &s.error {
        let _ = write!(title, "; failed: {e}");
    }
    title
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}

fn verdict_table(page: &mut String, r: &Rehearsed) {
    page.push_str(
        "<h2>Verdict</h2><table id=\"verdict\"><tr><th></th><th>check</th><th>measured</th><th>limit</th></tr>\n",
    );
    for c in &r.verdict {
        let _ = writeln!(
            page,
            "<tr><td class=\"{class}\">{mark}</td><td>{check}{phase}</td><td>{measured}</td><td>{limit}</td></tr>",
            class = if c.passed { "passed" } else { "failed" },
            mark = if c.passed { "ok" } else { "FAIL" },
            check = c.check,
            phase = c
                .phase
                .as_deref()
                .map(|p| format!(" in {}", escape(p)))
                .unwrap_or_default(),
            measured = escape(&c.measured),
            limit = escape(&c.limit),
        );
    }
    page.push_str("</table>\n");
}

fn phase_table(page: &mut String, phases: &[PhaseJson]) {
    page.push_str(
        "<h2>Phases</h2><table id=\"phases\"><tr><th>phase</th><th>from, s</th><th>time, s</th><th>tx</th>\
         <th>tx/s</th><th>p50, ms</th><th>p95, ms</th><th>p99, ms</th><th>max, ms</th><th>errors</th>\
         <th>lock waits</th></tr>\n",
    );
    for p in phases {
        let errors: Vec<String> = p.errors.iter().map(|e| format!("{} × {}", e.code, e.count)).collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.1}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&p.name),
            p.start_ms / 1000.0,
            p.duration_ms / 1000.0,
            p.transactions,
            p.throughput,
            ms(p.latency.p50_ms),
            ms(p.latency.p95_ms),
            ms(p.latency.p99_ms),
            ms(p.latency.max_ms),
            escape(&errors.join(", ")),
            p.lock_waits.len(),
        );
    }
    page.push_str("</table>\n");
    for p in phases {
        for e in &p.errors {
            let _ = writeln!(
                page,
                "<p>{}: <code>{}</code> × {}: {}</p>",
                escape(&p.name),
                escape(&e.code),
                e.count,
                escape(&e.message)
            );
        }
    }
}

fn statement_table(page: &mut String, statements: &[RehearsedStatement]) {
    page.push_str(
        "<h2>Statements</h2><table id=\"statements\"><tr><th>migration</th><th>statement</th><th>from, s</th>\
         <th>time, ms</th><th>locks taken (held to the commit)</th><th>waits behind it</th></tr>\n",
    );
    for s in statements {
        let waits = match s.longest_wait_ms {
            Some(longest) => format!("{}, longest {longest:.0} ms", s.waits),
            None => "0".to_owned(),
        };
        let locks = if s.in_transaction {
            s.locks.iter().map(|l| escape(l)).collect::<Vec<_>>().join("<br>")
        } else {
            "(outside a transaction: held only while it ran)".to_owned()
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td><code>{}</code>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.1}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&s.migration),
            escape(&s.sql),
            s.error
                .as_deref()
                .map(|e| format!("<br><span class=\"failed\">failed: {}</span>", escape(e)))
                .unwrap_or_default(),
            s.start_ms / 1000.0,
            s.duration_ms,
            locks,
            waits,
        );
    }
    page.push_str("</table>\n");
}

/// The longest waits, at most this many.
const WAITS_SHOWN: usize = 50;

fn wait_table(page: &mut String, phases: &[PhaseJson]) {
    let mut waits: Vec<(&str, &crate::json::WaitJson)> = phases
        .iter()
        .flat_map(|p| p.lock_waits.iter().map(move |w| (p.name.as_str(), w)))
        .collect();
    if waits.is_empty() {
        return;
    }
    waits.sort_by(|a, b| b.1.duration_ms.total_cmp(&a.1.duration_ms));
    let _ = writeln!(
        page,
        "<h2>Lock waits</h2><p>{} seen{}.</p><table id=\"waits\"><tr><th>phase</th><th>waiter</th><th>query</th>\
         <th>from, s</th><th>waited, ms</th><th>behind</th></tr>",
        waits.len(),
        if waits.len() > WAITS_SHOWN {
            format!("; the {WAITS_SHOWN} longest")
        } else {
            String::new()
        }
    );
    for (phase, w) in waits.into_iter().take(WAITS_SHOWN) {
        let behind = match (w.blocker, &w.statement, &w.application) {
            ("migration", Some(s), _) => format!("the migration's <code>{}</code>", escape(s)),
            ("other", Some(s), Some(app)) => format!("{} running <code>{}</code>", escape(app), escape(s)),
            (blocker, ..) => escape(blocker),
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{:.2}</td>\
             <td class=\"n\">{:.0}</td><td>{}</td></tr>",
            escape(phase),
            w.waiter,
            escape(&w.query),
            w.start_ms / 1000.0,
            w.duration_ms,
            behind
        );
    }
    page.push_str("</table>\n");
}

/// Text as HTML (and SVG) text and attribute values take it.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{CheckJson, LatencyJson};

    fn statement(sql: &str, start_ms: f64, waits: u64) -> RehearsedStatement {
        RehearsedStatement {
            migration: "1_index".to_owned(),
            sql: sql.to_owned(),
            start_ms,
            duration_ms: 800.0,
            in_transaction: true,
            locks: vec!["SHARE on accounts (table)".to_owned()],
            error: None,
            waits,
            longest_wait_ms: (waits > 0).then_some(750.0),
        }
    }

    fn rehearsal() -> Rehearsed {
        let phase = |name: &str, kind, start_ms, duration_ms| PhaseJson {
            name: name.to_owned(),
            kind,
            start_ms,
            duration_ms,
            transactions: 100,
            throughput: 50.0,
            latency: LatencyJson {
                p50_ms: Some(2.0),
                p95_ms: Some(4.0),
                p99_ms: Some(8.0),
                max_ms: Some(9.0),
            },
            errors: Vec::new(),
            lock_waits: Vec::new(),
        };
        Rehearsed {
            scratch: "postgres://localhost/a<b".to_owned(),
            clients: 2,
            rate: None,
            phases: vec![
                phase("baseline", "baseline", 0.0, 2000.0),
                phase("1_index", "migration", 2000.0, 1000.0),
                phase("after", "after", 3000.0, 2000.0),
            ],
            reporter: None,
            lock_waits_not_sampled: None,
            migrations: Vec::new(),
            statements: vec![
                statement("CREATE INDEX i ON accounts (a)", 2100.0, 3),
                statement("SELECT 1 < 2", 2950.0, 0),
            ],
            failure: None,
            verdict: vec![CheckJson {
                check: "errors",
                phase: None,
                measured: "0 failed transaction(s)".to_owned(),
                limit: "0".to_owned(),
                passed: true,
            }],
            timeline: (0..10)
                .map(|i| WindowJson {
                    start_ms: f64::from(i) * 500.0,
                    transactions: 10,
                    failed: u64::from(i == 5),
                    p50_ms: Some(2.0),
                    p99_ms: Some(if i == 5 { 700.0 } else { 8.0 }),
                    max_ms: Some(900.0),
                })
                .collect(),
        }
    }

    #[test]
    fn each_statement_is_marked_inside_the_plot_in_the_order_it_ran() {
        let page = html(&rehearsal(), true);
        assert_eq!(page.matches(" data-start-ms=").count(), 2, "{page}");
        assert_eq!(page.matches("<g class=\"marker waited\"").count(), 1);
        // Escaped in the title, the table and the heading alike.
        assert!(page.contains("SELECT 1 &lt; 2"));
        assert!(!page.contains("SELECT 1 < 2"));
        assert!(page.contains("postgres://localhost/a&lt;b"));
        let xs: Vec<i32> = page
            .match_indices(" data-start-ms=")
            .map(|(at, _)| {
                let rest = &page[at..];
                let x = &rest[rest.find(" x=\"").expect("a rect") + 4..];
                x[..x.find('"').expect("quoted")].parse().expect("a number")
            })
            .collect();
        assert!(xs[0] > 60 && xs[0] < xs[1] && xs[1] < WIDTH as i32, "{xs:?}");
        // plotters drew the three series and the axes' words.
        assert!(page.matches("<polyline").count() >= 3, "{page}");
        assert!(page.contains("seconds from the start of the load"));
        assert!(page.contains("<td class=\"passed\">ok</td>"));
    }
}
