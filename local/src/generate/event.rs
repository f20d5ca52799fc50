//! One generated event: the message it is about, then the fields its class and type carry, in
//! the order (and with the random draws) that makes the output byte-identical per seed.

use serde_json::{Value, json};

use super::{Generator, mix, write_element};

/// The message an event is about, drawn once per event.
struct Message {
    hash: u64,
    user: u64,
    domain: &'static str,
    rcpt: String,
    campaign: &'static str,
    subject: &'static str,
    sending_ip: String,
    ip_pool: &'static str,
    sender: String,
}

impl Generator {
    /// Appends one element (`{"msys":{"<class>":{...}}}`) to `out`.
    pub(super) fn event(&mut self, batch_time: i64, out: &mut String) {
        let (event_type, class) = self.pick_type();
        let index = self.index;
        self.index += 1;
        let m = self.message();
        let mut f: Vec<(&'static str, Value)> = Vec::with_capacity(40);
        self.head(event_type, index, batch_time, &m, &mut f);
        if event_type == "sms_status" {
            self.sms_status(&mut f, &m.sending_ip);
            return write_element(class, &mut f, &mut self.rng, out);
        }
        if class == "relay_event" {
            self.relay(event_type, &mut f, &m.rcpt, &m.sending_ip, m.hash);
            return write_element(class, &mut f, &mut self.rng, out);
        }
        self.message_fields(event_type, class, &m, &mut f);
        self.type_fields(event_type, &m, &mut f);
        if class == "gen_event" {
            f.push(("rcpt_subs", json!({"first_name": null, "plan": "basic"})));
        }
        if class == "track_event" {
            self.track_fields(event_type, &m, &mut f);
        }
        write_element(class, &mut f, &mut self.rng, out)
    }

    /// The message an event is about: several events share one, as a message's life does.
    fn message(&mut self) -> Message {
        let message_no = self.rng.below(self.total / 3 + 1) ^ (self.seed << 20);
        let hash = mix(message_no);
        let user = hash % 5_000_000;
        let domain = *self.rng.pick(&[
            "example.com",
            "example.org",
            "example.net",
            "mail.example.com",
        ]);
        let campaign = *self.rng.pick(&[
            "Summer Sale 2025",
            "Weekly Newsletter",
            "Password Reset",
            "Order Confirmation",
            "Abandoned Cart Reminder",
            "Product Launch: Aurora",
            "Re-engagement Q4",
        ]);
        let subject = *self.rng.pick(&[
            "Summer deals are here!",
            "Your weekly digest from Example Co.",
            "Reset your password",
            "Your order #%s has shipped",
            "You left something in your cart",
            "Meet Aurora — our newest product",
            "We miss you: 20% off your next order",
        ]);
        let ip_pool = *self
            .rng
            .pick(&["default", "transactional", "marketing", "shared"]);
        let sender = format!("news@{}", *self.rng.pick(&["example.com", "example.org"]));
        Message {
            hash,
            user,
            domain,
            rcpt: format!("user{user}@{domain}"),
            campaign,
            subject,
            sending_ip: format!("192.0.2.{}", 10 + hash % 40),
            ip_pool,
            sender,
        }
    }

    /// `type`, `timestamp`, `event_id` (not for sms_status) and the customer ids.
    fn head(
        &mut self,
        event_type: &'static str,
        index: u64,
        batch_time: i64,
        m: &Message,
        f: &mut Vec<(&'static str, Value)>,
    ) {
        f.push(("type", Value::String(event_type.into())));
        let ts = self.timestamp(batch_time);
        f.push(("timestamp", ts));
        if event_type != "sms_status" {
            // Unique per event: a linear function of the index, offset by the seed.
            let id = 100_000_000_000_000_000 + index * 104_729 + self.seed % 104_729;
            f.push(("event_id", Value::String(id.to_string())));
        }
        let c = self.num(1 + m.hash % 7);
        f.push(("customer_id", c));
        let s = self.num(m.hash % 4 * 100 + 1);
        f.push(("subaccount_id", s));
    }

    /// The fields every message-level event carries, and those of delivery attempts.
    fn message_fields(
        &mut self,
        event_type: &str,
        class: &str,
        m: &Message,
        f: &mut Vec<(&'static str, Value)>,
    ) {
        let is_gen = class == "gen_event";
        f.push(("campaign_id", Value::String(m.campaign.into())));
        f.push(("friendly_from", Value::String(m.sender.clone())));
        let msg_from = format!("msprvs1=abc{}={}", m.user, m.sender);
        f.push(("msg_from", Value::String(msg_from)));
        f.push(("ip_pool", Value::String(m.ip_pool.into())));
        f.push(("rcpt_to", Value::String(m.rcpt.clone())));
        f.push(("raw_rcpt_to", Value::String(m.rcpt.clone())));
        f.push(("routing_domain", Value::String(m.domain.into())));
        f.push(("sending_ip", Value::String(m.sending_ip.clone())));
        let template = format!("templ-{}", m.hash % 50);
        f.push(("template_id", Value::String(template)));
        let tv = self.num(1 + m.hash % 3);
        f.push(("template_version", tv));
        f.push(("transmission_id", Value::String((m.hash >> 8).to_string())));
        f.push(("rcpt_meta", self.rcpt_meta(m.user)));
        f.push(("rcpt_tags", self.rcpt_tags()));
        if !is_gen {
            let message_id = format!("{:020x}", u128::from(m.hash) << 16 | 0x4a5b);
            f.push(("message_id", Value::String(message_id)));
            if self.rng.chance(30) {
                f.push(("rcpt_type", Value::String("cc".into())));
            }
        }
        if !is_gen || event_type == "generation_rejection" {
            f.push(("subject", Value::String(m.subject.into())));
        }
        if event_type != "policy_rejection" && !is_gen {
            let size = 2_000 + self.rng.below(60_000);
            let size = self.num(size);
            f.push(("msg_size", size));
            f.push(("sending_domain", Value::String("mail.example.com".into())));
        }
        let delivered_ish = !matches!(
            event_type,
            "injection" | "policy_rejection" | "generation_failure" | "generation_rejection"
        );
        if delivered_ish {
            self.delivery_fields(event_type, f);
        }
        if delivered_ish && class != "track_event" {
            let address = format!("198.51.100.{}", m.user % 250);
            f.push(("ip_address", Value::String(address)));
        }
    }

    /// What a delivery attempt carries: method, retries, queue time, mailbox provider.
    fn delivery_fields(&mut self, event_type: &str, f: &mut Vec<(&'static str, Value)>) {
        f.push(("delv_method", Value::String("esmtp".into())));
        let retries = if self.rng.chance(900) {
            0
        } else {
            1 + self.rng.below(5)
        };
        let retries = self.num(retries);
        f.push(("num_retries", retries));
        if event_type != "bounce" {
            let qt = self.rng.below(90_000);
            let qt = self.num(qt);
            f.push(("queue_time", qt));
        }
        let provider = *self
            .rng
            .pick(&["Gmail", "Yahoo", "Hotmail / Outlook", "Apple", "Other"]);
        f.push(("mailbox_provider", Value::String(provider.into())));
    }

    /// The fields of one type.
    fn type_fields(&mut self, event_type: &str, m: &Message, f: &mut Vec<(&'static str, Value)>) {
        match event_type {
            "injection" => {
                f.push(("recv_method", Value::String("rest".into())));
                f.push(("click_tracking", Value::Bool(true)));
                f.push(("open_tracking", Value::Bool(true)));
                f.push(("initial_pixel", Value::Bool(true)));
            }
            "delivery" => {
                f.push(("outbound_tls", Value::String("1".into())));
                f.push(("recv_method", Value::String("rest".into())));
            }
            "bounce" | "delay" | "out_of_band" | "policy_rejection" | "generation_rejection" => {
                self.failure(event_type, f);
                if event_type == "policy_rejection" {
                    f.push(("remote_addr", Value::String("203.0.113.7".into())));
                }
            }
            "generation_failure" => {
                let code = self.num(554);
                f.push(("error_code", code));
                let reason = "554 - Substitution error: missing data for 'first_name'";
                f.push(("reason", Value::String(reason.into())));
                f.push(("raw_reason", Value::String(reason.into())));
            }
            "spam_complaint" => {
                f.push(("fbtype", Value::String("abuse".into())));
                f.push(("report_by", Value::String(format!("fbl@{}", m.domain))));
                f.push(("report_to", Value::String("abuse@example.com".into())));
                f.push(("user_str", Value::String("Feedback-Type: abuse".into())));
            }
            "list_unsubscribe" | "link_unsubscribe" => {
                let from = format!("unsubscribe@{}", m.domain);
                f.push(("mailfrom", Value::String(from)));
                if event_type == "link_unsubscribe" {
                    f.push(("user_agent", Value::String(self.user_agent().into())));
                }
            }
            _ => {}
        }
    }

    /// An engagement event's client: address, user agent, location, and a click's link.
    fn track_fields(&mut self, event_type: &str, m: &Message, f: &mut Vec<(&'static str, Value)>) {
        let address = format!("203.0.113.{}", m.user % 250);
        f.push(("ip_address", Value::String(address)));
        f.push(("user_agent", Value::String(self.user_agent().into())));
        f.push(("geo_ip", self.geo_ip()));
        if event_type.ends_with("click") {
            f.push(("target_link_name", Value::String("Shop now".into())));
            let url = format!(
                "https://www.example.com/shop/item-{}?utm_source=email&utm_campaign=c{}",
                self.rng.below(5_000),
                m.hash % 100
            );
            f.push(("target_link_url", Value::String(url)));
        }
    }

    /// bounce_class, error_code, reason and raw_reason of a failed or delayed delivery.
    fn failure(&mut self, event_type: &str, f: &mut Vec<(&'static str, Value)>) {
        let (class, code, reason) = match event_type {
            "delay" => (22, 421, "421 4.7.0 Try again later, closing connection."),
            "policy_rejection" => (25, 554, "554 5.7.1 Message generation rejected"),
            "generation_rejection" => (25, 554, "554 5.7.1 recipient address suppressed"),
            _ => *self.rng.pick(&[
                (
                    10,
                    550,
                    "550 5.1.1 The email account that you tried to reach does not exist.",
                ),
                (
                    10,
                    550,
                    "550 5.1.1 <user@example.com>: Recipient address rejected",
                ),
                (30, 550, "550 5.0.0 No such user (mailbox unavailable)"),
                (
                    21,
                    552,
                    "552 5.2.2 The email account that you tried to reach is over quota.",
                ),
                (
                    50,
                    554,
                    "554 5.7.1 Message rejected due to content restrictions",
                ),
                (
                    51,
                    554,
                    "554 5.7.1 Service unavailable; Client host blocked using Spamhaus",
                ),
            ]),
        };
        let bc = self.num(class);
        f.push(("bounce_class", bc));
        let ec = self.num(code);
        f.push(("error_code", ec));
        f.push(("reason", Value::String(reason.into())));
        f.push((
            "raw_reason",
            Value::String(format!("{reason} - gsmtp mx.example.net [192.0.2.1]")),
        ));
    }

    fn sms_status(&mut self, f: &mut Vec<(&'static str, Value)>, sending_ip: &str) {
        let dst = format!("1555{:07}", self.rng.below(10_000_000));
        f.push(("delv_method", Value::String("sms".into())));
        f.push(("dr_latency", Value::String("1.35".into())));
        f.push(("ip_address", Value::String("198.51.100.9".into())));
        f.push(("ip_pool", Value::String("sms".into())));
        f.push(("raw_reason", Value::String("000".into())));
        f.push(("reason", Value::String("000".into())));
        f.push(("routing_domain", Value::String("sms-gateway".into())));
        f.push(("sending_ip", Value::String(sending_ip.into())));
        f.push(("sms_dst", Value::String(dst)));
        f.push(("sms_dst_npi", Value::String("E164".into())));
        f.push(("sms_dst_ton", Value::String("International".into())));
        f.push(("sms_remoteids", json!(["0000", "0001"])));
        f.push(("sms_src", Value::String("1234".into())));
        f.push(("sms_src_npi", Value::String("E164".into())));
        f.push(("sms_src_ton", Value::String("Unknown".into())));
        f.push((
            "sms_text",
            Value::String("Your verification code is 123456".into()),
        ));
        f.push(("stat_state", Value::String("DELIVRD".into())));
        f.push(("stat_type", Value::String("SMSC Delivery".into())));
    }

    fn relay(
        &mut self,
        event_type: &str,
        f: &mut Vec<(&'static str, Value)>,
        rcpt: &str,
        sending_ip: &str,
        message_hash: u64,
    ) {
        f.push((
            "relay_id",
            Value::String(format!("relay-{}", message_hash % 20)),
        ));
        f.push((
            "msg_from",
            Value::String(format!("sender{}@example.org", message_hash % 900)),
        ));
        if event_type != "relay_rejection" {
            f.push(("ip_pool", Value::String("relay".into())));
            f.push((
                "routing_domain",
                Value::String("inbound.example.com".into()),
            ));
            f.push(("sending_ip", Value::String(sending_ip.into())));
        }
        if matches!(event_type, "relay_injection" | "relay_rejection") {
            f.push(("rcpt_to", Value::String(rcpt.into())));
            f.push(("raw_rcpt_to", Value::String(rcpt.into())));
        }
        if event_type == "relay_injection" {
            let size = 1_000 + self.rng.below(40_000);
            let size = self.num(size);
            f.push(("msg_size", size));
        }
        if matches!(
            event_type,
            "relay_delivery" | "relay_tempfail" | "relay_permfail"
        ) {
            f.push(("delv_method", Value::String("esmtp".into())));
            let r = self.rng.below(3);
            let r = self.num(r);
            f.push(("num_retries", r));
            let q = self.rng.below(5_000);
            let q = self.num(q);
            f.push(("queue_time", q));
        }
        if matches!(
            event_type,
            "relay_rejection" | "relay_tempfail" | "relay_permfail"
        ) {
            let code = self.num(if event_type == "relay_tempfail" {
                421
            } else {
                550
            });
            f.push(("error_code", code));
            let reason = "550 5.1.1 relay webhook endpoint refused the message";
            f.push(("reason", Value::String(reason.into())));
            f.push(("raw_reason", Value::String(reason.into())));
        }
        if event_type == "relay_rejection" {
            let bc = self.num(1);
            f.push(("bounce_class", bc));
            f.push(("remote_addr", Value::String("203.0.113.50".into())));
        }
    }
}
