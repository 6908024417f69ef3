// flask-stripe-hooks admin: the event-type picker. Each <select multiple data-picker> becomes a
// search box, the chosen types (each removable) and a list of checkboxes; the select stays in
// the form, hidden, and is what is sent. Without JavaScript the select itself works
// (Ctrl-click or Cmd-click chooses several). On the page that creates an endpoint, the list
// shows the types of the payload style chosen: snapshot types, or thin ones (v1.*, v2.*).
(function () {
  "use strict";
  var THIN = /^v\d+\./;
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };

  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  function picker(select) {
    var form = select.form;
    var radios = form ? form.querySelectorAll("input[name=payload]") : [];
    var labelledBy = select.getAttribute("aria-labelledby");
    var label = labelledBy ? null : document.querySelector("label[for='" + select.id + "']");
    var box = make("div", {"class": "picker"});
    var search = make("input", {
      type: "search", "class": "filter", id: select.id + "-search",
      placeholder: "Search, e.g. invoice. or subscription", autocomplete: "off",
      "aria-controls": select.id + "-options"
    });
    search.setAttribute("aria-label", "Search event types");
    var chosen = make("div", {"class": "chosen", "aria-live": "polite", id: select.id + "-chosen"});
    var tools = make("div", {"class": "picker-tools"});
    var shownCount = make("small", {"class": "count"});
    var all = make("button", {type: "button", "class": "link", hidden: ""});
    var list = make("ul", {"class": "options", role: "group", id: select.id + "-options"});
    if (labelledBy) list.setAttribute("aria-labelledby", labelledBy);
    else if (label) { label.id = label.id || select.id + "-label"; list.setAttribute("aria-labelledby", label.id); }
    tools.appendChild(shownCount);
    tools.appendChild(all);
    box.appendChild(search);
    box.appendChild(chosen);
    box.appendChild(tools);
    box.appendChild(list);

    var boxes = [];
    each(select.options, function (option) {
      var item = make("li");
      var tick = make("input", {type: "checkbox", value: option.value});
      tick.checked = option.selected;
      var text = make("label");
      text.appendChild(tick);
      text.appendChild(document.createTextNode(" " + option.value));
      if (option.value === "*") text.appendChild(make("small", {}, " every event"));
      item.appendChild(text);
      list.appendChild(item);
      boxes.push({option: option, tick: tick, item: item});
      tick.addEventListener("change", function () { choose(option.value, tick.checked); });
    });

    function style() {  // the payload style chosen on the page, if it has the choice
      var checked = null;
      each(radios, function (r) { if (r.checked) checked = r.value; });
      return checked;
    }

    function fits(value, kind) {
      return value === "*" || !kind || (kind === "thin") === THIN.test(value);
    }

    function choose(value, on) {
      boxes.forEach(function (b) {
        if (b.option.value === value) b.option.selected = on;
        else if (on && (value === "*" || b.option.value === "*")) b.option.selected = false;
      });
      sync();
    }

    function sync() {
      var kind = style();
      boxes.forEach(function (b) {
        if (b.option.selected && !fits(b.option.value, kind)) b.option.selected = false;
        b.tick.checked = b.option.selected;
      });
      chosen.textContent = "";
      var picked = boxes.filter(function (b) { return b.option.selected; });
      if (!picked.length) chosen.appendChild(make("small", {"class": "count"}, "None chosen yet."));
      picked.forEach(function (b) {
        var chip = make("button", {type: "button", "class": "chip", title: "Remove " + b.option.value});
        chip.setAttribute("aria-label", "Remove " + b.option.value);
        chip.textContent = b.option.value + " ×";
        chip.addEventListener("click", function () { choose(b.option.value, false); search.focus(); });
        chosen.appendChild(chip);
      });
      filter();
    }

    function filter() {
      var q = search.value.trim().toLowerCase();
      var kind = style();
      var shown = [];
      boxes.forEach(function (b) {
        var value = b.option.value;
        var visible = value === "*" || (fits(value, kind) && (q === "" || value.toLowerCase().indexOf(q) !== -1));
        b.item.hidden = !visible;
        if (visible && value !== "*") shown.push(b);
      });
      var total = boxes.filter(function (b) { return b.option.value !== "*" && fits(b.option.value, kind); }).length;
      shownCount.textContent = q ? shown.length + " of " + total + " types match" : total + " types";
      var open = shown.filter(function (b) { return !b.option.selected; });
      all.hidden = !(q && open.length && open.length <= 60);
      all.textContent = "Choose these " + open.length;
      all.onclick = function () { open.forEach(function (b) { choose(b.option.value, true); }); };
    }

    search.addEventListener("input", filter);
    search.addEventListener("keydown", function (e) {
      if (e.key === "Enter") e.preventDefault(); // searching, not sending the form
    });
    each(radios, function (r) { r.addEventListener("change", sync); });
    select.hidden = true;
    var help = select.parentNode.querySelector(".nojs");
    if (help) help.hidden = true;
    select.parentNode.insertBefore(box, select.nextSibling);
    sync();
  }

  each(document.querySelectorAll("select[multiple][data-picker]"), picker);
})();
