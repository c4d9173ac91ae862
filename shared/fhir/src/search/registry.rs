//! The R4 search parameters, per resource type, and the R4 compartments.
//!
//! The data is the generated table in `r4.rs` (`scripts/gen-search-params.py`, from the HL7 FHIR
//! R4 4.0.1 definitions): static slices only, nothing parsed or allocated at run time. Per type
//! the parameters are one contiguous slice sorted by code, so `params` is a binary search over the
//! 146 type names and `param` one more binary search over the type's codes.

use std::sync::LazyLock;

use super::r4;
use crate::types::{R4_TYPES, ResourceType};

/// The type of a search parameter (R4 SearchParamType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    /// The R4 code: "number", "date", "string", "token", "reference", "composite", "quantity",
    /// "uri", "special".
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// A string of the table: a byte range of `r4::TEXT`. The table holds ranges rather than
/// `&str`s so that it has no pointers: each pointer in a static costs the binary a dynamic
/// relocation (24 bytes) and the process a fix-up at load.
#[derive(Debug, Clone, Copy)]
pub(super) struct S(pub(super) u32, pub(super) u16);

impl S {
    fn get(self) -> &'static str {
        &r4::TEXT[self.0 as usize..self.0 as usize + self.1 as usize]
    }
}

/// A range of `r4::TARGETS` or `r4::COMPONENTS`.
#[derive(Debug, Clone, Copy)]
pub(super) struct L(pub(super) u16, pub(super) u16);

impl L {
    fn range(self) -> std::ops::Range<usize> {
        self.0 as usize..self.0 as usize + self.1 as usize
    }
}

/// One search parameter as it applies to one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub(super) code: S,
    pub kind: ParamType,
    pub(super) expression: S,
    pub(super) targets: L,
    pub(super) components: L,
}

impl SearchParam {
    /// The code used in queries: "name", "_id", "code-value-quantity".
    pub fn code(&self) -> &'static str {
        self.code.get()
    }

    /// The FHIRPath expression restricted to this resource type: only the top-level `|`-parts
    /// of the definition's expression that are rooted at this type (or at Resource/DomainResource
    /// for common parameters), joined again with " | ". Empty when the definition has none
    /// (_text, _content, _query). Parts may be parenthesised: `(Observation.value as Quantity)`.
    /// One R4 definition has parts rooted at no type (InsurancePlan-name: `name | alias`); they
    /// are kept as written, relative to the resource.
    pub fn expression(&self) -> &'static str {
        self.expression.get()
    }

    /// Reference parameters: the target types R4 lists (none for other types).
    pub fn targets(&self) -> impl Iterator<Item = ResourceType> + use<> {
        r4::TARGETS[self.targets.range()]
            .iter()
            .filter_map(|i| ResourceType::from_index(usize::from(*i)))
    }

    /// Whether R4 lists `t` among the targets.
    pub fn lists_target(&self, t: ResourceType) -> bool {
        self.targets().any(|x| x == t)
    }

    /// Whether the parameter may point at a `t`: `t` is a listed target, or none is listed.
    pub fn may_target(&self, t: ResourceType) -> bool {
        self.targets.1 == 0 || self.lists_target(t)
    }

    /// Composite parameters: the components in order.
    pub fn components(&self) -> &'static [Component] {
        &r4::COMPONENTS[self.components.range()]
    }
}

/// One component of a composite parameter.
#[derive(Debug)]
pub struct Component {
    pub(super) code: S,
    pub kind: ParamType,
    pub(super) expression: S,
}

impl Component {
    /// The code of the component's own definition (e.g. "code", "value-quantity").
    pub fn code(&self) -> &'static str {
        self.code.get()
    }

    /// Relative to the composite's focus (`code`, `value.as(Quantity)`), as given in the
    /// definition.
    pub fn expression(&self) -> &'static str {
        self.expression.get()
    }
}

fn type_index(t: ResourceType) -> Option<usize> {
    R4_TYPES.binary_search(&t.as_str()).ok()
}

/// Every parameter that applies to `t` (its own and the common Resource/DomainResource ones),
/// sorted by code.
pub fn params(t: ResourceType) -> &'static [SearchParam] {
    match type_index(t) {
        Some(i) => &r4::PARAMS[r4::OFFSETS[i] as usize..r4::OFFSETS[i + 1] as usize],
        None => &[],
    }
}

/// The parameter `code` of `t`.
pub fn param(t: ResourceType, code: &str) -> Option<&'static SearchParam> {
    let ps = params(t);
    ps.binary_search_by(|p| p.code().cmp(code))
        .ok()
        .map(|i| &ps[i])
}

/// Every (type, parameter) pair, types in `R4_TYPES` order, for the CapabilityStatement and tests.
pub fn all() -> impl Iterator<Item = (ResourceType, &'static SearchParam)> {
    ResourceType::all().flat_map(|t| params(t).iter().map(move |p| (t, p)))
}

/// How many distinct definitions (urls) the table was generated from (1,375).
pub fn definitions() -> usize {
    r4::DEFINITIONS
}

/// Compartment membership: for a resource type `t` in compartment `compartment` (e.g. Patient),
/// the codes of the parameters that link it to the compartment owner (e.g. Observation in the
/// Patient compartment -> ["subject", "performer"]); `None` when `t` is not in that compartment
/// or the compartment is unknown. R4 lists every type in each CompartmentDefinition; a type listed
/// without params is, per the R4 definition of `CompartmentDefinition.resource.param`, not linked
/// to the compartment, so it is `None` here too and `Some(&[])` never occurs.
///
/// The owner type itself may be listed with the R4 marker `"{def}"` (Encounter, Practitioner and
/// RelatedPerson compartments): the resource that defines the compartment, not a search
/// parameter. (The Patient compartment lists Patient with `link` instead.)
pub fn compartment_params(
    compartment: ResourceType,
    t: ResourceType,
) -> Option<&'static [&'static str]> {
    let c = r4::COMPARTMENTS
        .binary_search_by(|(owner, _)| (*owner).cmp(compartment.as_str()))
        .ok()?;
    let members = r4::COMPARTMENTS[c].1;
    let m = members
        .binary_search_by(|(member, _)| (*member).cmp(t.as_str()))
        .ok()?;
    Some(members[m].1)
}

/// The compartments this server knows: the five R4 defines (Device, Encounter, Patient,
/// Practitioner, RelatedPerson), sorted.
pub fn compartments() -> &'static [ResourceType] {
    // ResourceType has no const constructor: five binary searches, once.
    static COMPARTMENTS: LazyLock<Vec<ResourceType>> = LazyLock::new(|| {
        r4::COMPARTMENTS
            .iter()
            .filter_map(|(owner, _)| ResourceType::parse(owner))
            .collect()
    });
    &COMPARTMENTS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    fn p(t: &str, code: &str) -> &'static SearchParam {
        param(rt(t), code).unwrap_or_else(|| panic!("{t}.{code} missing"))
    }

    #[test]
    fn table_matches_types() {
        assert_eq!(r4::TYPES.as_slice(), R4_TYPES);
        assert_eq!(r4::OFFSETS.len(), R4_TYPES.len() + 1);
        assert_eq!(*r4::OFFSETS.last().unwrap() as usize, r4::PARAMS.len());
        assert_eq!(all().count(), r4::PARAMS.len());
    }

    #[test]
    fn definitions_count() {
        assert_eq!(definitions(), 1375);
    }

    #[test]
    fn every_type_has_common_params_sorted_and_unique() {
        for t in ResourceType::all() {
            let ps = params(t);
            assert!(
                ps.windows(2).all(|w| w[0].code() < w[1].code()),
                "{t}: not sorted and unique"
            );
            let id = param(t, "_id").unwrap();
            assert_eq!(
                (id.kind, id.expression()),
                (ParamType::Token, "Resource.id")
            );
            let lu = param(t, "_lastUpdated").unwrap();
            assert_eq!(
                (lu.kind, lu.expression()),
                (ParamType::Date, "Resource.meta.lastUpdated")
            );
            for code in [
                "_tag",
                "_profile",
                "_security",
                "_source",
                "_content",
                "_query",
            ] {
                assert!(param(t, code).is_some(), "{t}.{code}");
            }
            let domain = !matches!(t.as_str(), "Binary" | "Bundle" | "Parameters");
            assert_eq!(param(t, "_text").is_some(), domain, "{t}._text");
        }
        assert!(param(rt("Binary"), "_text").is_none());
        assert_eq!(p("Patient", "_text").kind, ParamType::String);
        assert_eq!(p("Patient", "_text").expression(), "");
        assert_eq!(p("Patient", "_content").expression(), "");
    }

    #[test]
    fn expressions_are_restricted_to_the_type() {
        for (t, sp) in all() {
            for part in sp.expression().split(" | ").filter(|s| !s.is_empty()) {
                let root = part.trim_start_matches('(');
                let root = root
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap();
                let ok = root == t.as_str()
                    || (sp.code().starts_with('_') && root == "Resource")
                    || ResourceType::parse(root).is_none() && root != "Resource";
                assert!(ok, "{t}.{}: {part}", sp.code());
            }
            if sp.kind != ParamType::Reference {
                assert!(sp.targets().next().is_none(), "{t}.{}", sp.code());
            }
            assert!(sp.targets().count() == sp.targets.1 as usize);
            assert_eq!(
                sp.kind == ParamType::Composite,
                !sp.components().is_empty(),
                "{t}.{}",
                sp.code()
            );
        }
    }

    #[test]
    fn spot_checks() {
        assert_eq!(p("Patient", "name").kind, ParamType::String);
        let bd = p("Patient", "birthdate");
        assert_eq!(bd.kind, ParamType::Date);
        assert_eq!(bd.expression(), "Patient.birthDate");

        let cp = p("Condition", "patient");
        assert_eq!(cp.kind, ParamType::Reference);
        assert_eq!(
            cp.expression(),
            "Condition.subject.where(resolve() is Patient)"
        );
        assert_eq!(
            cp.targets().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["Patient"]
        );

        let cvq = p("Observation", "code-value-quantity");
        assert_eq!(cvq.kind, ParamType::Composite);
        assert!(cvq.targets().next().is_none());
        let comps: Vec<_> = cvq
            .components()
            .iter()
            .map(|c| (c.code(), c.kind, c.expression()))
            .collect();
        assert_eq!(
            comps,
            [
                ("code", ParamType::Token, "code"),
                ("value-quantity", ParamType::Quantity, "value.as(Quantity)"),
            ]
        );

        let vq = p("Observation", "value-quantity");
        assert_eq!(vq.kind, ParamType::Quantity);
        assert_eq!(
            vq.expression(),
            "(Observation.value as Quantity) | (Observation.value as SampledData)"
        );

        // A definition with several bases: clinical-date.
        let ed = p("Encounter", "date");
        assert_eq!(ed.expression(), "Encounter.period");
        assert_eq!(
            p("RiskAssessment", "date").expression(),
            "(RiskAssessment.occurrence as dateTime)"
        );

        assert_eq!(p("Observation", "subject").kind, ParamType::Reference);
        assert_eq!(p("Patient", "identifier").kind, ParamType::Token);
        assert_eq!(p("Location", "near").kind, ParamType::Special);
        assert_eq!(p("RiskAssessment", "probability").kind, ParamType::Number);
        assert_eq!(p("ValueSet", "url").kind, ParamType::Uri);
        assert!(param(rt("Patient"), "no-such-param").is_none());
        assert!(param(rt("Patient"), "").is_none());
    }

    #[test]
    fn param_type_codes() {
        assert_eq!(ParamType::Number.as_str(), "number");
        assert_eq!(ParamType::Quantity.as_str(), "quantity");
        assert_eq!(ParamType::Special.as_str(), "special");
        let mut kinds: Vec<&str> = all().map(|(_, p)| p.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), 9);
    }

    #[test]
    fn patient_compartment() {
        let patient = rt("Patient");
        assert!(compartments().contains(&patient));
        let obs = compartment_params(patient, rt("Observation")).unwrap();
        assert!(obs.contains(&"subject"));
        assert_eq!(compartment_params(patient, patient), Some(&["link"][..]));
        assert_eq!(compartment_params(patient, rt("Organization")), None);
        assert_eq!(compartment_params(patient, rt("Binary")), None);
        // Not a compartment.
        assert_eq!(
            compartment_params(rt("Observation"), rt("Observation")),
            None
        );
    }

    #[test]
    fn other_compartments() {
        let names: Vec<&str> = compartments().iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "Device",
                "Encounter",
                "Patient",
                "Practitioner",
                "RelatedPerson"
            ]
        );
        assert_eq!(
            compartment_params(rt("Encounter"), rt("Observation")),
            Some(&["encounter"][..])
        );
        assert_eq!(
            compartment_params(rt("Encounter"), rt("Encounter")),
            Some(&["{def}"][..])
        );
        assert_eq!(
            compartment_params(rt("Practitioner"), rt("Patient")),
            Some(&["general-practitioner"][..])
        );
        assert_eq!(
            compartment_params(rt("Device"), rt("Observation")),
            Some(&["subject", "device"][..])
        );
        assert_eq!(compartment_params(rt("Device"), rt("Device")), None);
    }

    #[test]
    fn compartment_params_are_reference_params() {
        for &c in compartments() {
            for t in ResourceType::all() {
                for &code in compartment_params(c, t).unwrap_or(&[]) {
                    if code == "{def}" {
                        assert_eq!(c, t);
                        continue;
                    }
                    let sp = param(t, code).unwrap_or_else(|| panic!("{c}: {t}.{code}"));
                    assert_eq!(sp.kind, ParamType::Reference, "{c}: {t}.{code}");
                }
            }
        }
    }
}
