//! A live cluster's census, from its query engine (PQL over HTTP).
