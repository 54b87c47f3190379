// Starts GraphiQL on the page GET /graphql serves (core/graphql_explorer.py), with the explorer plugin.
// React, ReactDOM, GraphiQL and the plugin are globals from the scripts loaded before this one.
"use strict";

(() => {
  const root = document.getElementById("graphiql");
  const endpoint = new URL(root.dataset.endpoint, window.location.href).href;

  // GraphiQL adds the headers pane's JSON to each request, so a pasted bearer token signs it in.
  const fetcher = GraphiQL.createFetcher({ url: endpoint });

  const STARTING_QUERY = `# clipdex's GraphQL API. Ctrl-Enter runs the query,
# Ctrl-Space completes, and the sidebar has the schema's docs.
#
# For what needs a signed-in user (me, likedByMe, your private
# videos), run the login mutation, then put its token in the
# Headers pane below:
#   {"Authorization": "Bearer <the token>"}
# Headers are not saved in the browser.

{
  __typename
}
`;

  // GraphiQL 2 keeps its history and favourites (each run query with its variables and headers) in
  // localStorage, even with shouldPersistHeaders off: a pasted bearer token would outlive the tab.
  // This storage writes them without their headers; the history in memory keeps them for the tab.
  const NAMESPACE = "graphiql:";
  const QUERY_LISTS = new Set([`${NAMESPACE}queries`, `${NAMESPACE}favorites`]);

  function withoutHeaders(key, value) {
    try {
      const stored = JSON.parse(value);
      const listName = key.slice(NAMESPACE.length);
      stored[listName] = stored[listName].map(({ headers, ...kept }) => kept);
      return JSON.stringify(stored);
    } catch {
      return null; // a shape this script does not know: better not kept than kept with a token
    }
  }

  const storage = {
    getItem: (key) => window.localStorage.getItem(key),
    setItem(key, value) {
      const kept = QUERY_LISTS.has(key) ? withoutHeaders(key, value) : value;
      if (kept === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, kept);
    },
    removeItem: (key) => window.localStorage.removeItem(key),
    get length() {
      return Object.keys(window.localStorage).filter((key) => key.startsWith(NAMESPACE)).length;
    },
    clear() {
      for (const key of Object.keys(window.localStorage)) {
        if (key.startsWith(NAMESPACE)) window.localStorage.removeItem(key);
      }
    },
  };

  function Explorer() {
    const [query, setQuery] = React.useState(STARTING_QUERY);
    const explorerPlugin = GraphiQLPluginExplorer.useExplorerPlugin({ query, onEdit: setQuery });
    return React.createElement(GraphiQL, {
      fetcher,
      query,
      onEditQuery: setQuery,
      plugins: [explorerPlugin],
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      storage,
    });
  }

  ReactDOM.render(React.createElement(Explorer), root);
})();
