//! An instance's environment: the kit's standard variables (`KAFKA_BOOTSTRAP_SERVERS`,
//! `EFFECTS_URL`, `INSTANCE`, `KAFKA_TOPIC`, `KAFKA_GROUP_ID`) and the program's own names for
//! them, given as templates (`KAFKA_BROKERS={bootstrap}`,
//! `EMAIL_API_URL={effects_url}/effects/email`), so that a program is run unchanged.

use super::ProcessError;

/// What an instance is told: the values the templates' placeholders stand for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InstanceAddresses {
    /// Its bootstrap address on the wire proxy (`{bootstrap}`).
    pub bootstrap: String,
    /// Its base URL on the effect service, without a trailing slash (`{effects_url}`).
    pub effects_url: String,
    /// Its number, 1, 2, ... (`{instance}`).
    pub instance: u32,
    /// The input topic (`{topic}`).
    pub topic: String,
    /// The consumer group (`{group}`).
    pub group: String,
}

/// The placeholders a template may use.
pub(crate) const PLACEHOLDERS: [&str; 5] = [
    "{bootstrap}",
    "{effects_url}",
    "{instance}",
    "{topic}",
    "{group}",
];

/// One variable the program reads, set from a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvTemplate {
    name: String,
    template: String,
}

impl EnvTemplate {
    /// A variable `name` set to `template` with its placeholders filled in; refused when the
    /// name cannot be a variable's or the template names a placeholder the kit does not know.
    pub fn new(name: &str, template: &str) -> Result<Self, ProcessError> {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(ProcessError::Environment(format!(
                "{name:?} cannot be an environment variable's name"
            )));
        }
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let tail = &rest[open..];
            let Some(known) = PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) else {
                let end = tail.find('}').map_or(tail.len(), |e| e + 1);
                return Err(ProcessError::Environment(format!(
                    "{name}={template}: unknown placeholder {:?} (known: {})",
                    &tail[..end],
                    PLACEHOLDERS.join(", ")
                )));
            };
            rest = &tail[known.len()..];
        }
        Ok(EnvTemplate {
            name: name.to_string(),
            template: template.to_string(),
        })
    }

    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The variable's value for an instance.
    pub fn value(&self, at: &InstanceAddresses) -> String {
        self.template
            .replace("{bootstrap}", &at.bootstrap)
            .replace("{effects_url}", &at.effects_url)
            .replace("{instance}", &at.instance.to_string())
            .replace("{topic}", &at.topic)
            .replace("{group}", &at.group)
    }
}

/// An instance's whole environment: the standard variables, then the program's own (which
/// win when a name is both).
pub(crate) fn environment_of(at: &InstanceAddresses, own: &[EnvTemplate]) -> Vec<(String, String)> {
    let mut vars = vec![
        ("KAFKA_BOOTSTRAP_SERVERS".to_string(), at.bootstrap.clone()),
        ("EFFECTS_URL".to_string(), at.effects_url.clone()),
        ("INSTANCE".to_string(), at.instance.to_string()),
        ("KAFKA_TOPIC".to_string(), at.topic.clone()),
        ("KAFKA_GROUP_ID".to_string(), at.group.clone()),
    ];
    for t in own {
        vars.retain(|(name, _)| name != t.name());
        vars.push((t.name().to_string(), t.value(at)));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(assignment: &str) -> Result<EnvTemplate, ProcessError> {
        let (name, template) = assignment.split_once('=').expect("NAME=VALUE");
        EnvTemplate::new(name, template)
    }

    fn at() -> InstanceAddresses {
        InstanceAddresses {
            bootstrap: "127.0.0.1:4000".into(),
            effects_url: "http://127.0.0.1:5000".into(),
            instance: 2,
            topic: "t".into(),
            group: "g".into(),
        }
    }

    #[test]
    fn templates_fill_in_every_placeholder_and_override_a_standard_name() {
        let own = [
            parse("KAFKA_BROKERS={bootstrap}").unwrap(),
            parse("EMAIL_API_URL={effects_url}/effects/email").unwrap(),
            parse("NAME=svc-{instance}-{topic}-{group}").unwrap(),
            parse("KAFKA_TOPIC=other").unwrap(),
            parse("EMPTY=").unwrap(),
        ];
        let vars = environment_of(&at(), &own);
        let get = |n: &str| {
            let found: Vec<&String> = vars
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v)
                .collect();
            assert_eq!(found.len(), 1, "{n} set {} times", found.len());
            found[0].clone()
        };
        assert_eq!(get("KAFKA_BROKERS"), "127.0.0.1:4000");
        assert_eq!(get("EMAIL_API_URL"), "http://127.0.0.1:5000/effects/email");
        assert_eq!(get("NAME"), "svc-2-t-g");
        assert_eq!(get("KAFKA_TOPIC"), "other");
        assert_eq!(get("EMPTY"), "");
        assert_eq!(get("KAFKA_BOOTSTRAP_SERVERS"), "127.0.0.1:4000");
        assert_eq!(get("INSTANCE"), "2");
    }

    #[test]
    fn bad_assignments_are_refused_with_the_reason() {
        for (bad, says) in [
            ("=x", "cannot be an environment variable's name"),
            ("URL={effects}", "unknown placeholder \"{effects}\""),
            ("URL={bootstrap", "unknown placeholder \"{bootstrap\""),
        ] {
            let error = parse(bad).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
