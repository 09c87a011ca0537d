//! A cron rule in words, for the status page: the common shapes (every N
//! minutes, hourly, daily, weekly, monthly) read as a sentence; anything else
//! is shown as the rule itself, which is never wrong.

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The rule in words, or `None` when it has no common shape.
pub fn describe(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        // A year field other than "every year" is too rare to put in words.
        7 if fields[6] == "*" => (fields[0], &fields[1..6]),
        _ => return None,
    };
    let [minute, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
    let any = |f: &str| f == "*" || f == "?";
    let number = |f: &str, max: u32| f.parse::<u32>().ok().filter(|n| *n <= max);
    if !any(month) {
        return None;
    }
    if second == "*" && [minute, hour, dom, dow].iter().all(|f| any(f)) {
        return Some("every second".into());
    }
    if let Some(step) = second
        .strip_prefix("*/")
        .or_else(|| second.strip_prefix("0/"))
        && [minute, hour, dom, dow].iter().all(|f| any(f))
    {
        let step = number(step, 59)?;
        return Some(format!("every {step} seconds"));
    }
    let second = number(second, 59)?;
    if let Some(step) = minute
        .strip_prefix("*/")
        .or_else(|| minute.strip_prefix("0/"))
        && any(hour)
        && any(dom)
        && any(dow)
        && second == 0
    {
        let step = number(step, 59)?;
        return Some(if step == 1 {
            "every minute".into()
        } else {
            format!("every {step} minutes")
        });
    }
    if minute == "*" && any(hour) && any(dom) && any(dow) {
        return Some(format!("every minute at :{second:02}"));
    }
    let minute = number(minute, 59)?;
    let at_seconds = if second == 0 {
        String::new()
    } else {
        format!(":{second:02}")
    };
    if any(hour) && any(dom) && any(dow) {
        return Some(format!("hourly at :{minute:02}{at_seconds}"));
    }
    if let Some(step) = hour.strip_prefix("*/").or_else(|| hour.strip_prefix("0/"))
        && any(dom)
        && any(dow)
    {
        let step = number(step, 23)?;
        return Some(format!("every {step} hours at :{minute:02}{at_seconds}"));
    }
    let hour = number(hour, 23)?;
    let time = format!("{hour:02}:{minute:02}{at_seconds}");
    match (any(dom), any(dow)) {
        (true, true) => Some(format!("daily at {time}")),
        (true, false) => {
            let days = weekdays(dow)?;
            Some(format!("{days} at {time}"))
        }
        (false, true) => {
            let day = number(dom, 31).filter(|d| *d >= 1)?;
            Some(format!("monthly on day {day} at {time}"))
        }
        (false, false) => None,
    }
}

/// `MON-FRI` or `1,3,5` as day names; `None` for anything else.
fn weekdays(field: &str) -> Option<String> {
    let day = |text: &str| -> Option<usize> {
        if let Ok(n) = text.parse::<usize>() {
            // 0 and 7 are both Sunday in Unix cron.
            return (n <= 7).then_some(n % 7);
        }
        DAYS.iter().position(|d| d.eq_ignore_ascii_case(text))
    };
    if let Some((from, to)) = field.split_once('-') {
        let (from, to) = (day(from)?, day(to)?);
        return Some(format!("{}-{}", DAYS[from], DAYS[to]));
    }
    let names: Option<Vec<&str>> = field.split(',').map(|d| day(d).map(|i| DAYS[i])).collect();
    names.map(|n| format!("on {}", n.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_rules_read_as_sentences_and_the_rest_is_left_as_written() {
        for (rule, words) in [
            ("* * * * * *", Some("every second")),
            ("*/10 * * * * *", Some("every 10 seconds")),
            ("*/15 * * * *", Some("every 15 minutes")),
            ("0 * * * *", Some("hourly at :00")),
            ("0 30 * * * ?", Some("hourly at :30")),
            ("0 0 */6 * * ?", Some("every 6 hours at :00")),
            ("0 0 12 * * ?", Some("daily at 12:00")),
            ("30 2 * * *", Some("daily at 02:30")),
            ("0 9 * * MON-FRI", Some("Mon-Fri at 09:00")),
            ("0 9 * * 1,3", Some("on Mon, Wed at 09:00")),
            ("0 0 1 * *", Some("monthly on day 1 at 00:00")),
            ("0 0 0 1 1 ? 2030", None),
            ("0 0 1 1 *", None),
            ("@daily", None),
            ("0 0 L * ?", None),
        ] {
            assert_eq!(describe(rule).as_deref(), words, "{rule}");
        }
    }
}
