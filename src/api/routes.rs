//! Route labels for metrics and the request span: the route template a request path
//! matches, taken from the routes as they are mounted, so a new route cannot go
//! unlabelled and a label never carries client-chosen text.

use poem::{IntoEndpoint, Route};
use poem_openapi::{OpenApi, OpenApiService, Webhook};

/// The label of every path no route serves: one series however many paths scanners try.
pub const UNMATCHED: &str = "unmatched";

/// Maps a request path to the template of the route that serves it.
#[derive(Debug, Default)]
pub struct RouteLabels {
    /// Ordered so that a literal segment comes before a parameter in the same place,
    /// as the router prefers `/users/me` to `/users/{id}`.
    templates: Vec<Template>,
    /// Nested endpoints (Swagger UI) serve every path below their prefix.
    prefixes: Vec<Box<str>>,
}

#[derive(Debug)]
struct Template {
    label: Box<str>,
    segments: Vec<Segment>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param,
}

impl Template {
    fn parse(template: &str) -> Self {
        let segments = template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') && segment.ends_with('}') {
                    Segment::Param
                } else {
                    Segment::Literal(segment.into())
                }
            })
            .collect();
        Self {
            label: template.into(),
            segments,
        }
    }

    fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        self.segments
            .iter()
            .all(|segment| match (segment, parts.next()) {
                (Segment::Literal(literal), Some(part)) => **literal == *part,
                (Segment::Param, Some(part)) => !part.is_empty(),
                (_, None) => false,
            })
            && parts.next().is_none()
    }

    fn params(&self) -> impl Iterator<Item = bool> + '_ {
        self.segments
            .iter()
            .map(|segment| *segment == Segment::Param)
    }
}

impl RouteLabels {
    /// `template` as OpenAPI writes paths: `/v1/admin/users/{id}`.
    pub fn add_template(&mut self, template: &str) {
        if self.templates.iter().any(|known| *known.label == *template) {
            return;
        }
        let template = Template::parse(template);
        let at = self
            .templates
            .partition_point(|known| known.params().le(template.params()));
        self.templates.insert(at, template);
    }

    pub fn add_prefix(&mut self, prefix: &str) {
        let prefix = prefix.trim_end_matches('/');
        if !self.prefixes.iter().any(|known| **known == *prefix) {
            self.prefixes.push(prefix.into());
        }
    }

    /// Every path template of the operations of an OpenAPI service.
    pub fn add_operations<T: OpenApi>(&mut self) {
        for api in T::meta() {
            for path in api.paths {
                self.add_template(&path.path);
            }
        }
    }

    /// The template that `path` matches, or [`UNMATCHED`].
    pub fn label(&self, path: &str) -> &str {
        if let Some(template) = self.templates.iter().find(|t| t.matches(path)) {
            return &template.label;
        }
        self.prefixes
            .iter()
            .map(|prefix| &**prefix)
            .find(|prefix| {
                path.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .unwrap_or(UNMATCHED)
    }
}

/// A `Route` that records in its labels each route it mounts.
#[derive(Default)]
pub struct LabelledRoute {
    route: Route,
    labels: RouteLabels,
}

impl LabelledRoute {
    pub fn new() -> Self {
        Self::default()
    }

    /// The operations of an OpenAPI service, at the root.
    pub fn operations<T, W>(mut self, service: OpenApiService<T, W>) -> Self
    where
        T: OpenApi + 'static,
        W: Webhook + 'static,
    {
        self.labels.add_operations::<T>();
        self.route = self.route.nest("/", service);
        self
    }

    /// `path` is static: poem's `:param` syntax would not match as a template.
    pub fn at<E>(mut self, path: &str, endpoint: E) -> Self
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.labels.add_template(path);
        self.route = self.route.at(path, endpoint);
        self
    }

    pub fn nest<E>(mut self, prefix: &str, endpoint: E) -> Self
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.labels.add_prefix(prefix);
        self.route = self.route.nest(prefix, endpoint);
        self
    }

    pub fn into_parts(self) -> (Route, RouteLabels) {
        (self.route, self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(templates: &[&str], prefixes: &[&str]) -> RouteLabels {
        let mut labels = RouteLabels::default();
        for template in templates {
            labels.add_template(template);
        }
        for prefix in prefixes {
            labels.add_prefix(prefix);
        }
        labels
    }

    #[test]
    fn an_exact_path_is_its_own_label() {
        let labels = labels(&["/v1/auth/login", "/metrics"], &[]);
        assert_eq!(labels.label("/v1/auth/login"), "/v1/auth/login");
        assert_eq!(labels.label("/metrics"), "/metrics");
    }

    #[test]
    fn a_path_with_a_parameter_is_labelled_by_its_template() {
        let labels = labels(&["/v1/admin/users/{id}", "/v1/admin/users"], &[]);
        assert_eq!(
            labels.label("/v1/admin/users/0b7c1a52-7d8e-4c55-9a7e-2f1d33c4e0aa"),
            "/v1/admin/users/{id}"
        );
        assert_eq!(labels.label("/v1/admin/users"), "/v1/admin/users");
    }

    #[test]
    fn a_parameter_matches_one_non_empty_segment() {
        let labels = labels(&["/v1/admin/users/{id}"], &[]);
        for path in [
            "/v1/admin/users/",
            "/v1/admin/users",
            "/v1/admin/users/a/b",
            "/v1/admin/users//",
        ] {
            assert_eq!(labels.label(path), UNMATCHED, "{path}");
        }
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter_whatever_the_order_added() {
        let labels = labels(
            &[
                "/v1/admin/users/{id}/sessions",
                "/v1/admin/users/{id}",
                "/v1/admin/users/me",
                "/v1/admin/{kind}/me",
            ],
            &[],
        );
        assert_eq!(labels.label("/v1/admin/users/me"), "/v1/admin/users/me");
        assert_eq!(labels.label("/v1/admin/users/42"), "/v1/admin/users/{id}");
        assert_eq!(labels.label("/v1/admin/clients/me"), "/v1/admin/{kind}/me");
        assert_eq!(
            labels.label("/v1/admin/users/42/sessions"),
            "/v1/admin/users/{id}/sessions"
        );
    }

    #[test]
    fn a_trailing_slash_is_another_path_as_for_the_router() {
        let labels = labels(&["/v1/auth/me"], &[]);
        assert_eq!(labels.label("/v1/auth/me/"), UNMATCHED);
        assert_eq!(labels.label("//v1/auth/me"), UNMATCHED);
    }

    #[test]
    fn an_unknown_path_is_unmatched() {
        let labels = labels(&["/v1/auth/login", "/v1/admin/users/{id}"], &["/docs"]);
        for path in ["/", "", "/v1/auth/login2", "/v1/auth", "/nowhere", "/docsx"] {
            assert_eq!(labels.label(path), UNMATCHED, "{path}");
        }
    }

    #[test]
    fn a_prefix_labels_itself_and_everything_below_it() {
        let labels = labels(&[], &["/docs/"]);
        for path in ["/docs", "/docs/", "/docs/index.css", "/docs/a/b"] {
            assert_eq!(labels.label(path), "/docs", "{path}");
        }
    }

    #[test]
    fn every_path_of_the_spec_is_labelled_by_itself() {
        let spec: serde_json::Value =
            serde_json::from_str(&crate::api::api_service().spec()).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        assert!(!paths.is_empty());
        let mut labels = RouteLabels::default();
        labels.add_operations::<crate::api::Apis>();
        for path in paths.keys() {
            assert_eq!(labels.label(path), path);
        }
    }
}
