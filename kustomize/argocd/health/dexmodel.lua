-- Argo CD health of a dex.dataenginex.io/DexModel (status written by dex_operator).
--
-- Argo CD runs this in gopher-lua (Lua 5.1) with only the base, table and package
-- libraries: no string or math library, so no string methods or string.format here.
--
--   Progressing  the operator has not reconciled the current generation yet, or a rollout
--                (phase Pending/Progressing) is under way, or the InferenceService is not Ready
--   Degraded     phase RolledBack or Failed, or the Degraded condition is True
--   Suspended    spec.rollout.paused (a manual gate holds the rollout)
--   Healthy      phase Promoted, Ready condition True, generation observed

local hs = {}

local function find_condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- The first non-empty string of the arguments.
local function first_message(...)
  for i = 1, select("#", ...) do
    local m = select(i, ...)
    if m ~= nil and m ~= "" then
      return m
    end
  end
  return ""
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the DEX operator to reconcile this DexModel"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the DEX operator to observe generation " .. generation
  return hs
end

local phase = status.phase
local degraded = find_condition(status, "Degraded")
local degraded_true = degraded ~= nil and degraded.status == "True"
if phase == "RolledBack" or phase == "Failed" or degraded_true then
  local from_condition = nil
  if degraded_true then
    from_condition = degraded.message
  end
  hs.status = "Degraded"
  hs.message = first_message(from_condition, status.message, "phase " .. tostring(phase))
  return hs
end

if obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.paused == true then
  hs.status = "Suspended"
  local where = ""
  if status.canaryVersion ~= nil then
    where = ": canary version " .. status.canaryVersion .. " at " .. (status.canaryWeight or 0) .. "%"
  end
  hs.message = "Rollout paused (spec.rollout.paused)" .. where
  return hs
end

local ready = find_condition(status, "Ready")
if phase == "Promoted" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = first_message(status.message, "Promoted")
  else
    local why = nil
    if ready ~= nil then
      why = ready.message
    end
    hs.status = "Progressing"
    hs.message = first_message(why, "Waiting for the InferenceService to become Ready")
  end
  return hs
end

if phase == nil or phase == "Pending" or phase == "Progressing" then
  local waiting = nil
  if ready ~= nil and ready.status ~= "True" then
    waiting = ready.message
  end
  hs.status = "Progressing"
  hs.message = first_message(status.message, waiting, "phase " .. tostring(phase or "Pending"))
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
