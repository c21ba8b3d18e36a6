//! `Amount`: a Kubernetes quantity as users write it in YAML (`4`, `500m`, `16Gi`).
//!
//! YAML turns `cpu: 4` into a number and `cpu: 500m` into a string, so the field is
//! int-or-string on the wire. The schema hands the syntax check to the API server's CEL
//! `quantity` library, so a malformed or negative value is refused before we ever see it.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::quantity::{self, Milli};

/// A quantity kept exactly as the user wrote it; parse it with [`Amount::milli`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount(pub String);

impl Amount {
    /// The value in thousandths of a unit (millicores, millibytes, milli-objects).
    pub fn milli(&self) -> Result<Milli, quantity::ParseError> {
        quantity::parse(&self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Amount {
    fn from(s: &str) -> Self {
        Amount(s.to_string())
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Str(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Int(i) => Amount(i.to_string()),
            Raw::Float(f) => Amount(f.to_string()),
            Raw::Str(s) => Amount(s),
        })
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string(
            "type(self) == int ? self >= 0 : (isQuantity(self) && !quantity(self).isLessThan(quantity('0')))",
            "must be a non-negative quantity such as 500m, 4, 16Gi",
        )
    }
}

/// An int-or-string field checked by one CEL rule (YAML makes `4` a number and `4Gi` a string).
fn int_or_string(rule: &str, message: &str) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 64}],
        "x-kubernetes-validations": [{"rule": rule, "message": message}]
    })
}

/// A whole number of objects (pods, services, ...), written as `10` or `"10"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Count(pub Amount);

impl JsonSchema for Count {
    fn schema_name() -> Cow<'static, str> {
        "Count".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string(
            "type(self) == int ? self >= 0 : (isQuantity(self) && quantity(self).isInteger() && !quantity(self).isLessThan(quantity('0')))",
            "must be a whole, non-negative number",
        )
    }
}

impl Count {
    pub fn milli(&self) -> Result<Milli, quantity::ParseError> {
        self.0.milli()
    }
}

impl From<i64> for Count {
    fn from(n: i64) -> Self {
        Count(Amount(n.to_string()))
    }
}
