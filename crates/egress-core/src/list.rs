//! Typed options for the `ListEgress` RPC.

use crate::proto;

/// Which egresses `ListEgress` should return.
///
/// The proto request has two independent optional filters; callers almost
/// always want exactly one of them, which is what this enum expresses.
///
/// # Example
///
/// ```
/// use egress_core::ListFilter;
///
/// assert_eq!(ListFilter::default(), ListFilter::All);
/// let by_room = ListFilter::Room("standup".into());
/// # let _ = by_room;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ListFilter {
    /// Every egress of the project.
    #[default]
    All,
    /// Only the egress with this id.
    Egress(String),
    /// Only egresses of this room.
    Room(String),
}

/// Everything `ListEgress` accepts, in typed form.
///
/// # Example
///
/// ```
/// use egress_core::{ListFilter, ListOptions, proto};
///
/// let request: proto::ListEgressRequest = ListOptions {
///     filter: ListFilter::Room("standup".into()),
///     active: true,
///     page_token: None,
/// }
/// .into();
/// assert_eq!(request.room_name, "standup");
/// assert!(request.egress_id.is_empty());
/// assert!(request.active);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListOptions {
    /// Which egresses to return.
    pub filter: ListFilter,
    /// Only return egresses that are still running.
    pub active: bool,
    /// Continue a previous listing (its response's `next_page_token`).
    pub page_token: Option<proto::TokenPagination>,
}

impl ListOptions {
    /// Lists every egress of the project.
    ///
    /// ```
    /// # use egress_core::{ListFilter, ListOptions};
    /// assert_eq!(ListOptions::all().filter, ListFilter::All);
    /// ```
    pub fn all() -> Self {
        Self::default()
    }

    /// Lists the egresses of one room.
    ///
    /// ```
    /// # use egress_core::ListOptions;
    /// let request = ListOptions::room("standup").into_request();
    /// assert_eq!(request.room_name, "standup");
    /// ```
    pub fn room(room_name: impl Into<String>) -> Self {
        Self {
            filter: ListFilter::Room(room_name.into()),
            ..Self::default()
        }
    }

    /// Looks up one egress by id.
    ///
    /// ```
    /// # use egress_core::ListOptions;
    /// let request = ListOptions::egress("EG_123").into_request();
    /// assert_eq!(request.egress_id, "EG_123");
    /// ```
    pub fn egress(egress_id: impl Into<String>) -> Self {
        Self {
            filter: ListFilter::Egress(egress_id.into()),
            ..Self::default()
        }
    }

    /// Restricts the listing to running egresses (or not).
    ///
    /// ```
    /// # use egress_core::ListOptions;
    /// assert!(ListOptions::all().active(true).into_request().active);
    /// ```
    #[must_use]
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }

    /// Continues from a previous page.
    ///
    /// ```
    /// # use egress_core::{ListOptions, proto};
    /// let token = proto::TokenPagination { token: "next".into() };
    /// let request = ListOptions::all().page_token(token.clone()).into_request();
    /// assert_eq!(request.page_token, Some(token));
    /// ```
    #[must_use]
    pub fn page_token(mut self, token: proto::TokenPagination) -> Self {
        self.page_token = Some(token);
        self
    }

    /// Builds the proto request. Equivalent to `ListEgressRequest::from(self)`.
    pub fn into_request(self) -> proto::ListEgressRequest {
        self.into()
    }
}

impl From<ListOptions> for proto::ListEgressRequest {
    fn from(options: ListOptions) -> Self {
        // The proto treats an empty string as "no filter", so whichever filter
        // is not chosen simply stays empty.
        let (room_name, egress_id) = match options.filter {
            ListFilter::All => (String::new(), String::new()),
            ListFilter::Egress(id) => (String::new(), id),
            ListFilter::Room(room) => (room, String::new()),
        };
        Self {
            room_name,
            egress_id,
            active: options.active,
            page_token: options.page_token,
        }
    }
}
