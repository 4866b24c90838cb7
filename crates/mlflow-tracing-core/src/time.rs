//! The two time spellings of MLflow's REST JSON: protobuf `Timestamp` as RFC 3339 with milliseconds
//! (`2026-11-23T23:58:32.500Z`) and protobuf `Duration` as seconds (`0.059s`).

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_millis(epoch_ms: i64) -> String {
    let seconds = epoch_ms.div_euclid(1000);
    let millis = epoch_ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Reads an RFC 3339 timestamp (`Z` or `±HH:MM` offset, any number of fraction digits) as epoch milliseconds.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        offset if offset.len() == 6 && matches!(offset.as_bytes()[0], b'+' | b'-') => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let hours = offset.get(1..3)?.parse::<i64>().ok()?;
            let minutes = offset.get(4..6)?.parse::<i64>().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1000 + millis)
}

/// Formats milliseconds as a protobuf JSON `Duration`, which has 0 or 3 fraction digits at this precision:
/// `0.059s`, `0.040s`, `2s`.
pub fn format_duration_millis(duration_ms: i64) -> String {
    let seconds = duration_ms / 1000;
    let millis = (duration_ms % 1000).abs();
    if millis == 0 {
        return format!("{seconds}s");
    }
    let sign = if duration_ms < 0 && seconds == 0 {
        "-"
    } else {
        ""
    };
    format!("{sign}{seconds}.{millis:03}s")
}

/// Reads a protobuf JSON `Duration` (`"0.059s"`) as milliseconds, rounding to the nearest.
pub fn parse_duration_millis(text: &str) -> Option<i64> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    seconds
        .is_finite()
        .then(|| (seconds * 1000.0).round() as i64)
}

// Howard Hinnant's civil calendar algorithms (public domain), days counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_captured_request_time() {
        // 1795478312500 ms is the start of the root span in get_trace_pipeline_v3.json.
        assert_eq!(
            format_rfc3339_millis(1_795_478_312_500),
            "2026-11-23T23:58:32.500Z"
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-23T23:58:32.500Z"),
            Some(1_795_478_312_500)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-23T23:58:32Z"),
            Some(1_795_478_312_000)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-11-24T00:58:32.5+01:00"),
            Some(1_795_478_312_500)
        );
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-23 garbage",
            "2026-11-23T23:58:32.Z",
            "2026-11-23T23:58:32",
        ] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_use_protobuf_seconds() {
        assert_eq!(format_duration_millis(59), "0.059s");
        assert_eq!(format_duration_millis(83), "0.083s");
        assert_eq!(format_duration_millis(40), "0.040s");
        assert_eq!(format_duration_millis(1500), "1.500s");
        assert_eq!(format_duration_millis(2000), "2s");
        assert_eq!(parse_duration_millis("0.059s"), Some(59));
        assert_eq!(parse_duration_millis("2s"), Some(2000));
        assert_eq!(parse_duration_millis("fast"), None);
    }
}
