//! Counts, sizes, rates and durations as people read them, the same in
//! `cronbyte status`, `cronbyte watch` and the status page.

/// `950`, `12.3k`, `4.5M`, `1.2G`.
pub fn count(n: u64) -> String {
    scaled(n as f64, 1000.0, &["", "k", "M", "G", "T"], "")
}

/// `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    scaled(n as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"], " ")
}

/// A rate per second, as `count` or `bytes` write the amount.
pub fn per_second(rate: f64, amount: fn(u64) -> String) -> String {
    format!("{}/s", amount(rate.max(0.0).round() as u64))
}

fn scaled(mut value: f64, step: f64, units: &[&str], gap: &str) -> String {
    let mut unit = 0;
    while value >= step && unit + 1 < units.len() {
        value /= step;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{gap}{}", units[0])
    } else {
        format!("{value:.1}{gap}{}", units[unit])
    }
}

/// `45s`, `3m05s`, `2h10m`, `3d04h`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_durations_read_as_people_write_them() {
        assert_eq!(count(950), "950");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(4_500_000), "4.5M");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(per_second(1_000.4, count), "1.0k/s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7_800), "2h10m");
        assert_eq!(duration(273_600), "3d04h");
        assert_eq!(duration(-5), "0s");
    }
}
