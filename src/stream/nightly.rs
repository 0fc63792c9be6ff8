//! ZTF's nightly topics, `ztf_YYYYMMDD_programidN`: a consumer follows tonight's and
//! yesterday's (UTC) and moves on at UTC midnight, since old nightly topics linger on the
//! broker and a late alert may still arrive on yesterday's.

use chrono::{Days, NaiveDate, Utc};

/// The nightly topics to follow for some ZTF program ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyTopics {
    pub program_ids: Vec<u32>,
}

impl NightlyTopics {
    /// Tonight's and yesterday's topics for the UTC date `today`, in name order.
    pub fn topics_on(&self, today: NaiveDate) -> Vec<String> {
        let yesterday = today.checked_sub_days(Days::new(1)).unwrap_or(today);
        let mut out: Vec<String> = [yesterday, today]
            .iter()
            .flat_map(|d| {
                self.program_ids
                    .iter()
                    .map(move |p| format!("ztf_{}_programid{p}", d.format("%Y%m%d")))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The topics to follow now.
    pub fn topics_now(&self) -> Vec<String> {
        self.topics_on(today())
    }
}

/// Today's UTC date.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_tonight_and_yesterday_across_a_month_end() {
        let n = NightlyTopics {
            program_ids: vec![1, 2],
        };
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(
            n.topics_on(d),
            [
                "ztf_20260228_programid1",
                "ztf_20260228_programid2",
                "ztf_20260301_programid1",
                "ztf_20260301_programid2"
            ]
        );
    }
}
