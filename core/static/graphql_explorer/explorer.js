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
    });
  }

  ReactDOM.render(React.createElement(Explorer), root);
})();
