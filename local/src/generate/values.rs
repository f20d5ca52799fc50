//! The generator's nested values: recipient metadata and tags, user agents, locations.

use serde_json::{Value, json};

use super::Generator;

impl Generator {
    pub(super) fn rcpt_meta(&mut self, user: u64) -> Value {
        let mut meta = serde_json::Map::new();
        meta.insert("user_id".into(), Value::String(user.to_string()));
        if self.rng.chance(600) {
            let tier = *self.rng.pick(&["free", "basic", "pro", "enterprise"]);
            meta.insert("plan".into(), Value::String(tier.into()));
        }
        if self.rng.chance(300) {
            meta.insert(
                "signup".into(),
                json!({"source": *self.rng.pick(&["web", "ios", "android"]), "year": 2019 + self.rng.below(7)}),
            );
        }
        Value::Object(meta)
    }

    pub(super) fn rcpt_tags(&mut self) -> Value {
        let all = [
            "newsletter",
            "promo",
            "vip",
            "US",
            "EU",
            "beta",
            "transactional",
        ];
        let n = self.rng.below(4) as usize;
        Value::Array(
            (0..n)
                .map(|_| Value::String((*self.rng.pick(&all)).into()))
                .collect(),
        )
    }

    pub(super) fn user_agent(&mut self) -> &'static str {
        const AGENTS: &[&str] = &[
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Mozilla/5.0 (compatible; GoogleImageProxy)",
        ];
        AGENTS[self.rng.below(AGENTS.len() as u64) as usize]
    }

    pub(super) fn geo_ip(&mut self) -> Value {
        let (country, region, city, lat, lon) = *self.rng.pick(&[
            ("US", "MD", "Columbia", 39.1749, -76.8375),
            ("US", "CA", "San Francisco", 37.7749, -122.4194),
            ("GB", "ENG", "London", 51.5072, -0.1276),
            ("DE", "BE", "Berlin", 52.52, 13.405),
            ("BR", "SP", "São Paulo", -23.5505, -46.6333),
            ("JP", "13", "Tokyo", 35.6762, 139.6503),
        ]);
        json!({
            "country": country,
            "region": region,
            "city": city,
            "latitude": lat,
            "longitude": lon,
            "zip": 21_046,
            "postal_code": "21046",
        })
    }
}
